"""A local copy of one symbol's Kraken v2 ``book`` (price levels), validated by CRC32.

Prices and quantities are :class:`~decimal.Decimal` parsed from the wire text, because Kraken's
checksum hashes their exact decimal text (``0.10000000`` contributes ``10000000``): a float
would lose the trailing zeros. The checksum covers the top 10 asks (price low to high) then the
top 10 bids (price high to low); for each level, the price then the qty with the ``.`` removed
and leading zeros stripped, concatenated, CRC32 as an unsigned 32-bit integer. The book applies
every level of a message, then truncates to the subscribed depth (Kraken never sends a delete
for a level that merely falls out of scope), then checks the message's checksum.

A book whose checksum failed is *invalid* until the next snapshot: it raises on reads, so a
consumer can never see a book known to be wrong.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

BOOK_DEPTHS = (10, 25, 100, 500, 1000)
CHECKSUM_LEVELS = 10
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class KrakenBookLevel:
    """One price level: ``qty`` 0 in an update deletes the level."""

    price: Decimal
    qty: Decimal


@dataclass(frozen=True, slots=True)
class KrakenBookTop:
    """Best bid and ask of a validated book."""

    symbol: str
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    ts_us: int


class BookChecksumError(ValueError):
    """The local book does not hash to the exchange's checksum: it must be rebuilt."""


class InvalidBookError(RuntimeError):
    """Read of a book that failed its checksum and awaits a fresh snapshot."""


def level_text(value: Decimal) -> str:
    """The checksum text of a price or qty: decimal text, ``.`` removed, leading zeros gone."""
    return format(value, "f").replace(".", "").lstrip("0")


def book_checksum(asks: Iterable[KrakenBookLevel], bids: Iterable[KrakenBookLevel]) -> int:
    """Kraken's v2 CRC32 of (at most) the first 10 ``asks`` (best first) and ``bids`` (best
    first), both already in book order."""
    parts: list[str] = []
    for side in (asks, bids):
        for count, level in enumerate(side):
            if count == CHECKSUM_LEVELS:
                break
            parts.append(level_text(level.price))
            parts.append(level_text(level.qty))
    return zlib.crc32("".join(parts).encode("ascii")) & 0xFFFFFFFF


class _Side:
    """Levels of one side, keyed by price, with prices kept sorted best first."""

    __slots__ = ("_descending", "_keys", "qty")

    def __init__(self, descending: bool) -> None:
        self.qty: dict[Decimal, Decimal] = {}
        # Sorted ascending by sort key; bids use the negated price so the best comes first.
        self._keys: list[Decimal] = []
        self._descending = descending

    def _key(self, price: Decimal) -> Decimal:
        return -price if self._descending else price

    def set(self, price: Decimal, qty: Decimal) -> None:
        if qty == _ZERO:
            if self.qty.pop(price, None) is not None:
                key = self._key(price)
                del self._keys[bisect_left(self._keys, key)]
            return
        if price not in self.qty:
            insort(self._keys, self._key(price))
        self.qty[price] = qty

    def truncate(self, depth: int) -> None:
        for key in self._keys[depth:]:
            del self.qty[-key if self._descending else key]
        del self._keys[depth:]

    def levels(self, limit: int | None = None) -> list[KrakenBookLevel]:
        keys = self._keys if limit is None else self._keys[:limit]
        sign = -1 if self._descending else 1
        return [KrakenBookLevel(sign * key, self.qty[sign * key]) for key in keys]

    def clear(self) -> None:
        self.qty.clear()
        self._keys.clear()


class OrderBook:
    """One symbol's book at a subscribed ``depth`` (10, 25, 100, 500 or 1000)."""

    def __init__(self, symbol: str, depth: int = 10) -> None:
        if depth not in BOOK_DEPTHS:
            raise ValueError(f"book depth must be one of {BOOK_DEPTHS}, got {depth}")
        self.symbol = symbol
        self.depth = depth
        self._bids = _Side(descending=True)
        self._asks = _Side(descending=False)
        self.valid = False
        self.ts_us = 0

    def apply_snapshot(self, bids: Sequence[KrakenBookLevel], asks: Sequence[KrakenBookLevel],
                       checksum: int, ts_us: int = 0) -> None:
        """Replace the book; raises :class:`BookChecksumError` (and stays invalid) on a
        checksum mismatch."""
        self._bids.clear()
        self._asks.clear()
        self.valid = True
        self._apply(bids, asks, checksum, ts_us)

    def apply_update(self, bids: Sequence[KrakenBookLevel], asks: Sequence[KrakenBookLevel],
                     checksum: int, ts_us: int = 0) -> None:
        """Apply an update; raises :class:`InvalidBookError` when no valid snapshot is in
        place, :class:`BookChecksumError` (the book turns invalid) on a mismatch."""
        if not self.valid:
            raise InvalidBookError(f"{self.symbol} book awaits a snapshot")
        self._apply(bids, asks, checksum, ts_us)

    def _apply(self, bids: Sequence[KrakenBookLevel], asks: Sequence[KrakenBookLevel], checksum: int,
               ts_us: int) -> None:
        for level in bids:
            self._bids.set(level.price, level.qty)
        for level in asks:
            self._asks.set(level.price, level.qty)
        self._bids.truncate(self.depth)
        self._asks.truncate(self.depth)
        local = self.checksum()
        if local != checksum:
            self.valid = False
            raise BookChecksumError(
                f"{self.symbol} book checksum {local} != exchange's {checksum}")
        if ts_us:
            self.ts_us = ts_us

    def checksum(self) -> int:
        """Kraken's CRC32 of the current top 10 levels of each side."""
        return book_checksum(self._asks.levels(CHECKSUM_LEVELS),
                             self._bids.levels(CHECKSUM_LEVELS))

    def invalidate(self) -> None:
        """Mark the book unusable until the next snapshot (e.g. the connection was lost)."""
        self.valid = False

    def _check(self) -> None:
        if not self.valid:
            raise InvalidBookError(f"{self.symbol} book is invalid until its next snapshot")

    def bids(self) -> list[KrakenBookLevel]:
        """Bid levels, best (highest) first."""
        self._check()
        return self._bids.levels()

    def asks(self) -> list[KrakenBookLevel]:
        """Ask levels, best (lowest) first."""
        self._check()
        return self._asks.levels()

    def top(self) -> KrakenBookTop | None:
        """Best bid and ask, ``None`` while a side is empty."""
        self._check()
        bids, asks = self._bids.levels(1), self._asks.levels(1)
        if not bids or not asks:
            return None
        return KrakenBookTop(self.symbol, bids[0].price, bids[0].qty, asks[0].price, asks[0].qty,
                         self.ts_us)
