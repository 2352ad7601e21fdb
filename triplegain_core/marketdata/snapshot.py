"""The typed, read-only view of the market that strategies read on each cycle.

A :class:`MarketSnapshot` holds, per symbol, bounded windows of closed candles for each
timeframe (as float64 arrays, so indicators run on them without conversion), optionally the
top levels of the order book, the recent public trades (as columns too) and the latest
prices. The producer (the executor's loop, a backtest, a Dagster asset) keeps
:class:`CandleBuffer` and :class:`TradeBuffer` rings and cuts windows from them: read-only
views of rows that never change once written, so building a snapshot copies no history.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TypeVar

import numpy as np

from triplegain_core.model.market import BookLevel, Candle, Side, Trade, timeframe_us

_T = TypeVar("_T")

_SERIES = ("open", "high", "low", "close", "volume")

# The parts of a snapshot a strategy may read; see MarketSnapshot.fingerprint.
SNAPSHOT_PARTS: frozenset[str] = frozenset({"time", "candles", "books", "trades", "prices"})


def _read_only(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False
    return values


def _unchecked(cls: type[_T], **fields: object) -> _T:
    """An instance of a frozen slotted dataclass built without ``__post_init__``.

    Only for values already known valid (a suffix of a checked window, a ring's own rows).
    """
    instance = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(instance, name, value)
    return instance


class _Ring:
    """Rows of int64 and float64 columns, bounded to ``capacity``, appended in O(1) amortised.

    The backing arrays hold twice the capacity. When they are full, the live rows move to new
    arrays (once per ``capacity`` appends), so a row once written never changes: the read-only
    views :meth:`columns` hands out stay as they were, without a copy.
    """

    def __init__(self, capacity: int, int_columns: int, float_columns: int) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2, got {capacity}")
        self.capacity = capacity
        self._ints = np.zeros((int_columns, 2 * capacity), dtype=np.int64)
        self._floats = np.zeros((float_columns, 2 * capacity), dtype=np.float64)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def last_int(self, column: int) -> int:
        return int(self._ints[column, self._end - 1])

    def append(self, ints: tuple[int, ...], floats: tuple[float, ...]) -> None:
        if self._end == self._ints.shape[1]:
            keep = self.capacity - 1
            self._ints = _moved(self._ints, self._end - keep, self._end)
            self._floats = _moved(self._floats, self._end - keep, self._end)
            self._start, self._end = 0, keep
        self._ints[:, self._end] = ints
        self._floats[:, self._end] = floats
        self._end += 1
        if len(self) > self.capacity:
            self._start += 1

    def extend(self, ints: np.ndarray, floats: np.ndarray) -> None:
        """Append the rows of ``ints`` and ``floats`` (columns by rows) at once, as many
        :meth:`append` calls would: the live rows end the same."""
        count = ints.shape[1]
        if count >= self.capacity:
            ints, floats, count = ints[:, -self.capacity:], floats[:, -self.capacity:], self.capacity
            self._start = self._end = 0
            self._ints, self._floats = np.zeros_like(self._ints), np.zeros_like(self._floats)
        elif self._end + count > self._ints.shape[1]:
            keep = min(len(self), self.capacity - count)
            self._ints = _moved(self._ints, self._end - keep, self._end)
            self._floats = _moved(self._floats, self._end - keep, self._end)
            self._start, self._end = 0, keep
        self._ints[:, self._end:self._end + count] = ints
        self._floats[:, self._end:self._end + count] = floats
        self._end += count
        self._start = max(self._start, self._end - self.capacity)

    def columns(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Read-only views of the live rows of every int and float column."""
        rows = slice(self._start, self._end)
        return list(_read_only(self._ints[:, rows])), list(_read_only(self._floats[:, rows]))


def _moved(backing: np.ndarray, start: int, end: int) -> np.ndarray:
    """A new backing array of the same shape with ``backing``'s rows start..end at its front."""
    fresh = np.zeros_like(backing)
    fresh[:, : end - start] = backing[:, start:end]
    return fresh


@dataclass(frozen=True, slots=True, eq=False)
class CandleWindow:
    """The most recent closed candles of one symbol and timeframe, oldest first.

    Every array has the same length; ``open_time_us`` strictly increases (gaps are allowed:
    real feeds have them). Arrays are read-only so a strategy cannot alter what the next one
    reads.
    """

    symbol: str
    timeframe: str
    open_time_us: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __post_init__(self) -> None:
        timeframe_us(self.timeframe)
        n = len(self.open_time_us)
        for name in _SERIES:
            if len(getattr(self, name)) != n:
                raise ValueError(f"{self.symbol} {self.timeframe}: column {name} length differs from time")
        if n > 1 and not bool(np.all(np.diff(self.open_time_us) > 0)):
            raise ValueError(f"{self.symbol} {self.timeframe}: candle times must strictly increase")

    @classmethod
    def from_arrays(
        cls,
        symbol: str,
        timeframe: str,
        open_time_us: Sequence[int] | np.ndarray,
        open: Sequence[float] | np.ndarray,
        high: Sequence[float] | np.ndarray,
        low: Sequence[float] | np.ndarray,
        close: Sequence[float] | np.ndarray,
        volume: Sequence[float] | np.ndarray,
    ) -> CandleWindow:
        """A window over copies of the given columns (converted to int64 / float64)."""
        return cls(
            symbol,
            timeframe,
            _read_only(np.array(open_time_us, dtype=np.int64)),
            *(_read_only(np.array(col, dtype=np.float64)) for col in (open, high, low, close, volume)),
        )

    @classmethod
    def from_candles(cls, candles: Sequence[Candle]) -> CandleWindow:
        """A window over ``candles`` (one symbol and timeframe, oldest first, non-empty)."""
        if not candles:
            raise ValueError("a candle window needs at least one candle (use None for no data)")
        first = candles[0]
        if any(c.symbol != first.symbol or c.timeframe != first.timeframe for c in candles):
            raise ValueError("a candle window holds one symbol and one timeframe")
        return cls.from_arrays(
            first.symbol,
            first.timeframe,
            [c.open_time_us for c in candles],
            [c.open for c in candles],
            [c.high for c in candles],
            [c.low for c in candles],
            [c.close for c in candles],
            [c.volume for c in candles],
        )

    def __len__(self) -> int:
        return len(self.open_time_us)

    def rows(self, start: int, end: int) -> CandleWindow:
        """The candles ``start`` to ``end`` (exclusive, ``0 <= start < end <= len``) as a window
        sharing this one's (read-only) memory."""
        # A run of a validated window is valid: skip the checks on the hot path.
        return _unchecked(
            CandleWindow,
            symbol=self.symbol,
            timeframe=self.timeframe,
            open_time_us=self.open_time_us[start:end],
            open=self.open[start:end],
            high=self.high[start:end],
            low=self.low[start:end],
            close=self.close[start:end],
            volume=self.volume[start:end],
        )

    def tail(self, count: int) -> CandleWindow:
        """The last ``count`` candles as a window sharing this one's (read-only) memory."""
        if count <= 0:
            raise ValueError(f"tail needs a positive count, got {count}")
        if count >= len(self):
            return self
        # A suffix of a validated window is valid: skip the checks on the hot path.
        return _unchecked(
            CandleWindow,
            symbol=self.symbol,
            timeframe=self.timeframe,
            open_time_us=self.open_time_us[-count:],
            open=self.open[-count:],
            high=self.high[-count:],
            low=self.low[-count:],
            close=self.close[-count:],
            volume=self.volume[-count:],
        )

    @property
    def last_open_time_us(self) -> int:
        """Open time of the last candle."""
        return int(self.open_time_us[-1])

    @property
    def last_close_time_us(self) -> int:
        """First microsecond after the last candle: when a signal on it can first be known."""
        return int(self.open_time_us[-1]) + timeframe_us(self.timeframe)


class CandleBuffer:
    """A bounded ring of one symbol's closed candles of one timeframe, cut into windows.

    Appending is O(1) amortised and :meth:`window` copies nothing, so the per-cycle cost stays
    bounded however long the process runs.
    """

    def __init__(self, symbol: str, timeframe: str, capacity: int = 300) -> None:
        timeframe_us(timeframe)
        self.symbol = symbol
        self.timeframe = timeframe
        self._ring = _Ring(capacity, 1, len(_SERIES))
        # Appended but not in the ring yet: written at once when a window is cut, so a
        # backtest's thousands of candles between two windows cost one copy, not one each.
        self._pending: list[Candle] = []
        self._last_open_us: int | None = None

    @property
    def capacity(self) -> int:
        """The most candles a window holds."""
        return self._ring.capacity

    def __len__(self) -> int:
        self._flush()
        return len(self._ring)

    def append(self, candle: Candle) -> None:
        """Add the next closed candle; ValueError for another series or a non-increasing time."""
        if candle.symbol != self.symbol or candle.timeframe != self.timeframe:
            raise ValueError(f"buffer holds {self.symbol} {self.timeframe}, got {candle.symbol} {candle.timeframe}")
        if self._last_open_us is not None and candle.open_time_us <= self._last_open_us:
            raise ValueError(f"{self.symbol} {self.timeframe}: candle at {candle.open_time_us} is not newer")
        self._pending.append(candle)
        self._last_open_us = candle.open_time_us

    @property
    def last_open_us(self) -> int | None:
        """The open time of the newest candle appended (None before the first)."""
        return self._last_open_us

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        if len(pending) == 1:
            candle = pending[0]
            self._ring.append((candle.open_time_us,),
                              (candle.open, candle.high, candle.low, candle.close, candle.volume))
        else:
            self._ring.extend(np.array([[c.open_time_us for c in pending]], dtype=np.int64),
                              np.array([[c.open for c in pending], [c.high for c in pending],
                                        [c.low for c in pending], [c.close for c in pending],
                                        [c.volume for c in pending]], dtype=np.float64))
        self._pending = []

    def take_pending_from(self, window: CandleWindow) -> None:
        """Write the candles appended since the last window from ``window``'s columns, which
        hold exactly them (the market's foreseen series of a batch), instead of converting
        them one by one; ValueError when they are not the same candles."""
        pending = self._pending
        if len(window) != len(pending) or (pending and int(window.open_time_us[-1]) != pending[-1].open_time_us):
            raise ValueError(f"{self.symbol} {self.timeframe}: {len(window)} rows for {len(pending)} pending candles")
        if pending:
            self._ring.extend(window.open_time_us[np.newaxis, :],
                              np.vstack((window.open, window.high, window.low, window.close, window.volume)))
            self._pending = []

    def extend(self, candles: Iterable[Candle]) -> None:
        """Append each candle in order."""
        for candle in candles:
            self.append(candle)

    def window(self) -> CandleWindow | None:
        """The buffered candles (read-only views: later appends leave them as they are), or None
        while empty."""
        self._flush()
        if not len(self._ring):
            return None
        (times,), (open_, high, low, close, volume) = self._ring.columns()
        # Appends were checked one by one, so the window's invariants already hold.
        return _unchecked(CandleWindow, symbol=self.symbol, timeframe=self.timeframe, open_time_us=times,
                          open=open_, high=high, low=low, close=close, volume=volume)


@dataclass(frozen=True, slots=True, eq=False)
class TradeWindow:
    """The recent public trades of one symbol as columns, oldest first.

    ``side`` is +1 where the taker bought, -1 where it sold, so taker flow is a dot product.
    Times never decrease.
    """

    symbol: str
    ts_us: np.ndarray
    trade_id: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    side: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ts_us)
        if any(len(column) != n for column in (self.trade_id, self.price, self.qty, self.side)):
            raise ValueError(f"{self.symbol} trade columns differ in length")
        if n > 1 and not bool(np.all(np.diff(self.ts_us) >= 0)):
            raise ValueError(f"{self.symbol} trade times must not decrease")

    @classmethod
    def from_trades(cls, trades: Sequence[Trade]) -> TradeWindow:
        """Columns of ``trades`` (one symbol, oldest first, non-empty)."""
        if not trades:
            raise ValueError("a trade window needs at least one trade (use no entry for no trades)")
        symbol = trades[0].symbol
        if any(t.symbol != symbol for t in trades):
            raise ValueError("a trade window holds one symbol")
        return cls(
            symbol,
            _read_only(np.array([t.ts_us for t in trades], dtype=np.int64)),
            _read_only(np.array([t.trade_id for t in trades], dtype=np.int64)),
            _read_only(np.array([t.price for t in trades], dtype=np.float64)),
            _read_only(np.array([t.qty for t in trades], dtype=np.float64)),
            _read_only(np.array([1.0 if t.side is Side.BUY else -1.0 for t in trades], dtype=np.float64)),
        )

    def __len__(self) -> int:
        return len(self.ts_us)

    def taker_flow(self, start_us: int, end_us: int) -> tuple[float, float, int]:
        """(taker buy qty, taker sell qty, trade count) of trades with start_us <= ts <= end_us."""
        lo = int(np.searchsorted(self.ts_us, start_us, side="left"))
        hi = int(np.searchsorted(self.ts_us, end_us, side="right"))
        if hi <= lo:
            return 0.0, 0.0, 0
        qty, side = self.qty[lo:hi], self.side[lo:hi]
        total = float(qty.sum())
        signed = float(qty @ side)
        return 0.5 * (total + signed), 0.5 * (total - signed), hi - lo


class TradeBuffer:
    """A bounded ring of one symbol's most recent trades, cut into :class:`TradeWindow` s."""

    def __init__(self, symbol: str, capacity: int = 1000) -> None:
        self.symbol = symbol
        self._ring = _Ring(capacity, 2, 3)
        # The last trade's time and id as Python ints: every incoming trade is compared to them.
        self._last_ts_us = self._last_id = -1

    def __len__(self) -> int:
        return len(self._ring)

    def append(self, trade: Trade) -> None:
        """Add the next trade; ValueError for another symbol or a trade older than the last."""
        if trade.symbol != self.symbol:
            raise ValueError(f"buffer holds {self.symbol}, got {trade.symbol}")
        if trade.ts_us < self._last_ts_us:
            raise ValueError(f"{self.symbol}: trade {trade.trade_id} is older than the last one")
        self._ring.append((trade.ts_us, trade.trade_id),
                          (trade.price, trade.qty, 1.0 if trade.side is Side.BUY else -1.0))
        self._last_ts_us, self._last_id = trade.ts_us, trade.trade_id

    def follows(self, trade: Trade) -> bool:
        """Whether ``trade`` comes after every buffered one (newer id, not older in time)."""
        return not len(self._ring) or (trade.trade_id > self._last_id and trade.ts_us >= self._last_ts_us)

    def extend(self, trades: Iterable[Trade]) -> None:
        """Append each trade in order."""
        for trade in trades:
            self.append(trade)

    def window(self) -> TradeWindow | None:
        """The buffered trades (read-only views: later appends leave them as they are), or None
        while empty."""
        if not len(self._ring):
            return None
        (ts, ids), (price, qty, side) = self._ring.columns()
        return _unchecked(TradeWindow, symbol=self.symbol, ts_us=ts, trade_id=ids, price=price, qty=qty, side=side)


def _level_is_positive(level: BookLevel) -> bool:
    price, qty = level
    return math.isfinite(price) and price > 0 and math.isfinite(qty) and qty > 0


@dataclass(frozen=True, slots=True)
class BookTop:
    """The top levels of one symbol's book: bids best (highest) first, asks best (lowest) first."""

    symbol: str
    ts_us: int
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]

    def __post_init__(self) -> None:
        if not self.bids or not self.asks:
            raise ValueError(f"{self.symbol} book needs at least one bid and one ask")
        for level in (*self.bids, *self.asks):
            if not _level_is_positive(level):
                raise ValueError(f"{self.symbol} book level needs a positive price and quantity, got "
                                 f"{level.price} x {level.qty}")
        if any(a.price <= b.price for a, b in pairwise(self.bids)):
            raise ValueError(f"{self.symbol} bids must strictly decrease")
        if any(b.price <= a.price for a, b in pairwise(self.asks)):
            raise ValueError(f"{self.symbol} asks must strictly increase")
        if self.bids[0].price >= self.asks[0].price:
            raise ValueError(f"{self.symbol} book is crossed: bid {self.bids[0].price} >= ask {self.asks[0].price}")

    @classmethod
    def from_checked_levels(cls, symbol: str, ts_us: int, bids: tuple[BookLevel, ...],
                            asks: tuple[BookLevel, ...]) -> BookTop | None:
        """A book sharing levels already checked finite, positive and strictly ordered (a
        hot-state ``BookSnapshot``'s), without checking them again; None when one-sided or crossed."""
        if not bids or not asks or bids[0].price >= asks[0].price:
            return None
        return _unchecked(cls, symbol=symbol, ts_us=ts_us, bids=bids, asks=asks)

    @property
    def best_bid(self) -> float:
        return self.bids[0].price

    @property
    def best_ask(self) -> float:
        return self.asks[0].price

    @property
    def mid(self) -> float:
        return 0.5 * (self.best_bid + self.best_ask)

    @property
    def spread(self) -> float:
        """Best ask minus best bid (always > 0)."""
        return self.best_ask - self.best_bid

    def imbalance(self, depth: int) -> float:
        """(bid qty - ask qty) / (bid qty + ask qty) over the top ``depth`` levels, in -1..1."""
        bid_qty = sum(level.qty for level in self.bids[:depth])
        ask_qty = sum(level.qty for level in self.asks[:depth])
        return (bid_qty - ask_qty) / (bid_qty + ask_qty)

    @property
    def microprice(self) -> float:
        """Mid weighted by the opposite side's top quantity: leans toward the thinner side."""
        bid, ask = self.bids[0], self.asks[0]
        return (bid.price * ask.qty + ask.price * bid.qty) / (bid.qty + ask.qty)


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """Everything a strategy may read on one cycle, as of ``ts_us``.

    ``candles`` maps (symbol, timeframe) to its window of *closed* candles; ``books`` and
    ``trades`` (a :class:`TradeWindow` per symbol) are optional per symbol (absent when the
    feed has none); ``prices`` are the latest traded or mid prices. Nothing in it is newer
    than ``ts_us``.
    """

    ts_us: int
    candles: Mapping[tuple[str, str], CandleWindow] = field(default_factory=dict)
    books: Mapping[str, BookTop] = field(default_factory=dict)
    trades: Mapping[str, TradeWindow] = field(default_factory=dict)
    prices: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for (symbol, timeframe), window in self.candles.items():
            if (window.symbol, window.timeframe) != (symbol, timeframe):
                raise ValueError(f"window {window.symbol} {window.timeframe} filed under {symbol} {timeframe}")
            if len(window) and window.last_close_time_us > self.ts_us:
                raise ValueError(f"{symbol} {timeframe}: last candle closes after the snapshot time")
        for symbol, book in self.books.items():
            if book.symbol != symbol:
                raise ValueError(f"book of {book.symbol} filed under {symbol}")
        for symbol, tape in self.trades.items():
            if tape.symbol != symbol:
                raise ValueError(f"trades of {tape.symbol} filed under {symbol}")
        for symbol, price in self.prices.items():
            if not (math.isfinite(price) and price > 0):
                raise ValueError(f"{symbol} price must be positive and finite, got {price}")

    def fingerprint(self, parts: frozenset[str] = SNAPSHOT_PARTS) -> tuple[object, ...]:
        """A key that changes whenever any of ``parts`` (see SNAPSHOT_PARTS) changes.

        Closed candles are final, so a window is identified by its series, last candle and
        length; a book by its time; trades by their count and last id. Lets the runner skip a
        strategy whose inputs did not change since its last call.
        """
        key: list[object] = []
        if "time" in parts:
            key.append(self.ts_us)
        if "candles" in parts:
            key.append(tuple((k, w.last_open_time_us if len(w) else None, len(w)) for k, w in self.candles.items()))
        if "books" in parts:
            key.append(tuple((symbol, book.ts_us) for symbol, book in self.books.items()))
        if "trades" in parts:
            key.append(tuple((symbol, len(t), int(t.trade_id[-1]) if len(t) else None)
                             for symbol, t in self.trades.items()))
        if "prices" in parts:
            key.append(tuple(self.prices.items()))
        return tuple(key)

    def window(self, symbol: str, timeframe: str) -> CandleWindow | None:
        """The closed candles of ``symbol`` on ``timeframe``, or None when the snapshot has none."""
        return self.candles.get((symbol, timeframe))

    def book(self, symbol: str) -> BookTop | None:
        """The top of ``symbol``'s book, or None."""
        return self.books.get(symbol)

    def recent_trades(self, symbol: str) -> TradeWindow | None:
        """The recent trades of ``symbol``, or None when the snapshot has none."""
        return self.trades.get(symbol)

    def price(self, symbol: str) -> float | None:
        """The latest price of ``symbol``: the snapshot's price, else the last close of any window."""
        price = self.prices.get(symbol)
        if price is not None:
            return price
        latest: tuple[int, float] | None = None
        for (window_symbol, _), window in self.candles.items():
            if window_symbol == symbol and len(window):
                candidate = (window.last_close_time_us, float(window.close[-1]))
                if latest is None or candidate[0] > latest[0]:
                    latest = candidate
        return None if latest is None else latest[1]
