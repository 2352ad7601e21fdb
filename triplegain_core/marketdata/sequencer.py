"""The trade sequencer: the exchange's trade sequence out of whatever frames arrived.

Kraken numbers each book's trades in sequence (``trade_id``). A live stream delivers them in
frames that may be lost, repeated or reordered, plus snapshots (the last 50 trades) at each
subscription, after each reconnect and whenever one is asked to close a gap. The
:class:`TradeSequencer` turns all of that into each symbol's trades once, in id order, or a
reported :class:`~triplegain_core.marketdata.gaps.MissedInterval` for what none of them brought:

- a trade already applied is a duplicate (counted, dropped);
- one that comes early is held until the ids before it arrive (counted as reordered when it is
  released);
- a gap that does not close within the patience (trades held, or seconds) is due a snapshot
  (:meth:`TradeSequencer.due`), asked again after ``resync_timeout_s``, and given up after
  ``max_resyncs``: what is missing before the held trades becomes a hole, and the stream goes
  on after it;
- a snapshot merged with the held trades closes what it can; what lies before its first trade
  and after the last applied one is a hole;
- with ``backfill``, the trades after a hole wait (the symbol is *filling*) until
  :meth:`TradeSequencer.fill` brings the missing ones (REST), then all are applied in order.

Pure: no I/O and no clock. The host reads the frames, passes the time (``now``, any monotonic
seconds) where patience matters, asks the snapshots that :meth:`~TradeSequencer.due` names,
fetches the holes of :meth:`~TradeSequencer.take_holes` and counts into a
:class:`SequenceCounts` of its choice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from triplegain_core.marketdata.gaps import MissedInterval
from triplegain_core.model.market import Trade

MAX_HELD_TRADES = 10_000  # a symbol's out-of-order trades held before giving the gap up


@dataclass(frozen=True, slots=True)
class TradeMark:
    """The last trade stored for a symbol, to resume its sequence after a restart."""

    trade_id: int
    ts_us: int


@dataclass
class SequenceCounts:
    """What the sequencer saw, counted live."""

    duplicate_trades: int = 0
    reordered_trades: int = 0  # trades that came early and waited for their predecessors
    missed_intervals: int = 0
    missed_trades: int = 0
    backfilled_trades: int = 0  # missed trades brought back by the backfill, in order


@dataclass(frozen=True, slots=True)
class GapPatience:
    """How long a gap may stay open before a snapshot is asked, and how many are asked."""

    trades: int = 8  # trades held
    seconds: float = 0.25
    resync_timeout_s: float = 1.0  # a snapshot asked that long ago is asked again
    max_resyncs: int = 3  # snapshots asked for one gap before it is given up
    max_held: int = MAX_HELD_TRADES


class _Sequence:
    """One symbol's place in its trade sequence."""

    __slots__ = ("filling", "gap_since", "held", "last_ts", "next_id", "reconnected", "resync_at",
                 "resyncs")

    def __init__(self) -> None:
        self.next_id: int | None = None
        self.last_ts = 0
        self.held: dict[int, Trade] = {}
        self.gap_since = 0.0
        self.resync_at = 0.0  # when a snapshot was asked; 0 when none is awaited
        self.resyncs = 0  # snapshots asked for the current gap
        self.reconnected = False  # a hole found next spans a reconnection
        self.filling = False  # a backfill of the hole before ``held`` is due or under way


class TradeSequencer:
    """The trade sequences of ``symbols``.

    Every method that can release trades appends them, in id order per symbol, to the
    ``ready`` list it is given. ``backfill``: holes wait for :meth:`fill` (else the stream goes
    on after them at once). ``resume_from``: symbol -> the last stored trade, so a hole across
    a restart is found too (reason ``"reconnect"``).
    """

    def __init__(self, symbols: Iterable[str], *, backfill: bool = False,
                 patience: GapPatience | None = None, counts: SequenceCounts | None = None,
                 resume_from: Mapping[str, TradeMark] | None = None) -> None:
        self._sequences = {symbol: _Sequence() for symbol in symbols}
        self._backfill = backfill
        self.patience = patience or GapPatience()
        self.counts = counts if counts is not None else SequenceCounts()
        self.holes: list[MissedInterval] = []  # found, not yet taken (a plain list: read per frame)
        for symbol, mark in (resume_from or {}).items():
            sequence = self._sequences.get(symbol)
            if sequence is not None:
                sequence.next_id = mark.trade_id + 1
                sequence.last_ts = mark.ts_us
                sequence.reconnected = True

    def next_id(self, symbol: str) -> int | None:
        """The id ``symbol``'s next trade must have; None before its first trade."""
        return self._sequences[symbol].next_id

    def in_step(self, symbol: str) -> bool:
        """Whether every trade of ``symbol`` up to the feed's present is applied: one is known,
        none is held or being backfilled, and none can be missing since a reconnection (its
        snapshot or next trade has come on this connection). Only then does a minute without
        its trades count as quiet."""
        sequence = self._sequences[symbol]
        return (sequence.next_id is not None and not sequence.held and not sequence.filling
                and not sequence.reconnected)

    def take_holes(self) -> list[MissedInterval]:
        """The holes found since the last call (each counted once in :attr:`counts`); until
        then they are in :attr:`holes`."""
        holes, self.holes = self.holes, []
        return holes

    # --- what the host tells -----------------------------------------------------------------

    def updates(self, trades: Sequence[Trade], now: float, ready: list[Trade]) -> None:
        """Trades of an update frame, received at ``now``."""
        sequences = self._sequences
        counts = self.counts
        for trade in trades:
            sequence = sequences[trade.symbol]
            next_id = sequence.next_id
            if next_id is None or trade.trade_id == next_id:
                ready.append(trade)
                sequence.next_id = trade.trade_id + 1
                sequence.last_ts = trade.ts_us
                sequence.reconnected = False
                if sequence.held:
                    self._release(sequence, ready)
            elif trade.trade_id < next_id or trade.trade_id in sequence.held:
                counts.duplicate_trades += 1
            else:
                self._hold(trade, sequence, now, ready)

    def snapshot(self, trades: Sequence[Trade], ready: list[Trade]) -> None:
        """Trades of a snapshot frame (the latest trades of one or more symbols)."""
        by_symbol: dict[str, dict[int, Trade]] = {}
        for trade in trades:
            by_symbol.setdefault(trade.symbol, {})[trade.trade_id] = trade
        for symbol, merged in by_symbol.items():
            sequence = self._sequences[symbol]
            # The snapshot and the trades held for the gap, as one run in id order.
            for trade_id, trade in sequence.held.items():
                merged.setdefault(trade_id, trade)
            sequence.held.clear()
            ids = sorted(merged)
            for index, trade_id in enumerate(ids):
                next_id = sequence.next_id
                if next_id is not None and trade_id < next_id:
                    self.counts.duplicate_trades += 1
                    continue
                trade = merged[trade_id]
                if next_id is not None and trade_id > next_id:
                    self._missed(sequence, symbol, trade, next_id)
                    if sequence.filling:  # the rest waits for the backfill of the hole
                        sequence.held.update((i, merged[i]) for i in ids[index:])
                        break
                ready.append(trade)
                sequence.next_id = trade_id + 1
                sequence.last_ts = trade.ts_us
            # We hold the latest trades: nothing before them is missing any more.
            sequence.gap_since = sequence.resync_at = 0.0
            sequence.resyncs = 0
            sequence.reconnected = False
        if not trades:  # an empty snapshot says nothing of the gaps it was asked for
            for symbol, sequence in self._sequences.items():
                if sequence.resync_at:
                    self._settle(symbol, sequence, ready)

    def reconnecting(self) -> None:
        """The connection was lost: a hole found next spans the reconnection."""
        for sequence in self._sequences.values():
            sequence.reconnected = True

    def connected(self) -> None:
        """A new connection: no snapshot asked on the previous one is awaited any more."""
        for sequence in self._sequences.values():
            sequence.resync_at = 0.0
            sequence.resyncs = 0

    def resync_asked(self, symbol: str, now: float) -> None:
        """The host asked ``symbol``'s trade snapshot at ``now``."""
        sequence = self._sequences[symbol]
        sequence.resync_at = now
        sequence.resyncs += 1

    def due(self, now: float, ready: list[Trade]) -> list[str]:
        """The symbols whose gap is due a trade snapshot at ``now`` (the host asks them and
        calls :meth:`resync_asked`); a gap whose snapshots are spent is given up."""
        patience = self.patience
        wanted: list[str] = []
        for symbol, sequence in self._sequences.items():
            if not sequence.held or sequence.filling:
                continue
            if sequence.resync_at:
                if now - sequence.resync_at > patience.resync_timeout_s:
                    if sequence.resyncs >= patience.max_resyncs:
                        self._settle(symbol, sequence, ready)
                    else:  # the snapshot may have been lost: ask again
                        wanted.append(symbol)
                continue
            if (len(sequence.held) >= patience.trades
                    or now - sequence.gap_since >= patience.seconds):
                wanted.append(symbol)
        return wanted

    def end(self, ready: list[Trade]) -> None:
        """The stream ends: every gap still open is given up, and the trades held go out. With
        a backfill, call it again after filling the holes it found, until it finds none."""
        for symbol, sequence in self._sequences.items():
            if sequence.held and not sequence.filling:
                self._settle(symbol, sequence, ready)

    def fill(self, hole: MissedInterval, fetched: Iterable[Trade], ready: list[Trade]
             ) -> tuple[int, list[MissedInterval]]:
        """Merge the backfill of ``hole`` (any trades of its time span; those of its missing
        ids are kept) and release what follows. Returns how many missing trades it brought and
        the holes it left: every run of the hole's ids it did not bring (the stream goes on
        after them)."""
        sequence = self._sequences[hole.symbol]
        held = sequence.held
        first_id, last_id = hole.first_trade_id, hole.last_trade_id
        brought = 0
        if first_id is not None and last_id is not None:
            for trade in fetched:
                if (trade.symbol == hole.symbol and first_id <= trade.trade_id <= last_id
                        and trade.trade_id not in held):
                    held[trade.trade_id] = trade
                    brought += 1
        self.counts.backfilled_trades += brought
        sequence.filling = False
        self._drop_applied(sequence)
        self._release(sequence, ready, reordered=False)
        left: list[MissedInterval] = []
        next_id = sequence.next_id
        while held and next_id is not None and last_id is not None and next_id <= last_id:
            first = min(held)
            after = held[first]
            left.append(MissedInterval(hole.symbol, min(sequence.last_ts, after.ts_us), after.ts_us + 1,
                                       next_id, first - 1, hole.reason))
            sequence.next_id = first
            self._release(sequence, ready, reordered=False)
            next_id = sequence.next_id
        return brought, left

    # --- inside ------------------------------------------------------------------------------

    def _hold(self, trade: Trade, sequence: _Sequence, now: float, ready: list[Trade]) -> None:
        if not sequence.held:
            sequence.gap_since = now
        sequence.held[trade.trade_id] = trade
        if len(sequence.held) > self.patience.max_held:
            self._settle(trade.symbol, sequence, ready)

    def _release(self, sequence: _Sequence, ready: list[Trade], reordered: bool = True) -> None:
        held = sequence.held
        next_id = sequence.next_id
        released = 0
        while next_id in held:
            trade = held.pop(next_id)
            ready.append(trade)
            released += 1
            next_id += 1
            sequence.last_ts = trade.ts_us
        if reordered:
            self.counts.reordered_trades += released
        sequence.next_id = next_id
        if not held:
            sequence.gap_since = sequence.resync_at = 0.0
            sequence.resyncs = 0

    def _settle(self, symbol: str, sequence: _Sequence, ready: list[Trade]) -> None:
        """No snapshot can close this gap: report it, and go on from the trades held."""
        sequence.resync_at = 0.0
        sequence.resyncs = 0
        next_id = sequence.next_id
        self._drop_applied(sequence)
        if sequence.held:
            first = min(sequence.held)
            if next_id is not None and first > next_id:
                self._missed(sequence, symbol, sequence.held[first], next_id)
                if sequence.filling:
                    sequence.reconnected = False
                    return
            sequence.next_id = first
            self._release(sequence, ready)
        sequence.reconnected = False

    def _drop_applied(self, sequence: _Sequence) -> None:
        """Trades held that an earlier one already applied (a late copy) are duplicates."""
        next_id = sequence.next_id
        if next_id is not None:
            for trade_id in [i for i in sequence.held if i < next_id]:
                del sequence.held[trade_id]
                self.counts.duplicate_trades += 1

    def _missed(self, sequence: _Sequence, symbol: str, after: Trade, first_id: int) -> None:
        """Report the hole before ``after``; with a backfill the symbol is then ``filling``
        (the caller holds ``after`` and what follows)."""
        hole = MissedInterval(symbol, min(sequence.last_ts, after.ts_us), after.ts_us + 1, first_id,
                              after.trade_id - 1, "reconnect" if sequence.reconnected else "gap")
        self.counts.missed_intervals += 1
        self.counts.missed_trades += after.trade_id - first_id
        self.holes.append(hole)
        if self._backfill:
            sequence.filling = True
