"""The trade sequencer, property-tested: whatever the wire does to the frames of a true trade
sequence (frames dropped, repeated, delayed past later ones, lost in flight at a reconnect,
snapshots asked and resent), what comes out is the exchange's sequence, each trade once and in
order, and every trade missing from it lies in a reported hole. With a backfill, REST brings
the holes back and only what REST lacks too stays reported.

The true sequences are real trades (``../shared/data``: Binance XRP/ETH with its own trade ids,
Kraken BCH/EUR numbered in file order) and generated ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from triplegain_core.marketdata.gaps import MissedInterval
from triplegain_core.marketdata.sequencer import GapPatience, SequenceCounts, TradeMark, TradeSequencer
from triplegain_core.marketdata.sources import trades_from_file
from triplegain_core.model.market import Side, Trade

SYMBOLS = ("XRP/USDT", "BTC/USDT")
SNAPSHOT_TRADES = 5  # Kraken sends 50; fewer here so that holes longer than a snapshot are common
START_US = 1_767_571_200_000_000
PATIENCE = GapPatience(trades=4, seconds=0.25, resync_timeout_s=1.0, max_resyncs=2, max_held=64)

# --- the wire -------------------------------------------------------------------------------

DELIVER, DROP, REPEAT, DELAY = "deliver", "drop", "repeat", "delay"
TICK, RECONNECT = "tick", "reconnect"


@dataclass(frozen=True)
class Fate:
    """What the wire does to one frame: ``how`` (deliver, drop, repeat, delay), ``later``
    (frames a repeat or a delay lags) and what happens after it (``then``: nothing, a clock
    tick of ``seconds`` that may make a gap due, or a reconnect)."""

    how: str
    later: int
    then: str | None
    seconds: float
    snapshot_lost: bool  # a snapshot asked at this tick never comes


fates = st.builds(
    Fate,
    how=st.sampled_from([DELIVER, DELIVER, DROP, REPEAT, DELAY, DELAY]),
    later=st.integers(1, 12),
    then=st.sampled_from([None, None, None, None, TICK, TICK, RECONNECT]),
    seconds=st.floats(0.0, 1.6),
    snapshot_lost=st.booleans(),
)


@dataclass
class Outcome:
    """What the sequencer gave: each symbol's trades, the holes it reported and, with a
    backfill, the holes the backfill left."""

    trades: dict[str, list[Trade]] = field(default_factory=lambda: {s: [] for s in SYMBOLS})
    holes: list[MissedInterval] = field(default_factory=list)
    left: list[MissedInterval] = field(default_factory=list)
    filled: int = 0
    counts: SequenceCounts = field(default_factory=SequenceCounts)


class _Run:
    """One stream through a faulty wire into a :class:`TradeSequencer`, with the host's duties
    done as the streamer does them: snapshots asked when due, holes backfilled after the frame
    that found them."""

    def __init__(self, truth: dict[str, list[Trade]], backfill: bool, rest_lacks: frozenset[int],
                 resume: bool) -> None:
        self.truth = truth
        self.rest_lacks = rest_lacks
        self.backfill = backfill
        marks = {s: TradeMark(t[0].trade_id - 1, t[0].ts_us) for s, t in truth.items()} if resume else {}
        self.sequencer = TradeSequencer(SYMBOLS, backfill=backfill, patience=PATIENCE, resume_from=marks)
        self.out = Outcome()
        self.printed: dict[str, list[Trade]] = {s: [] for s in SYMBOLS}
        self.in_flight: list[tuple[int, int, str, list[Trade]]] = []  # (step, order, kind, trades)
        self.order = 0
        self.now = 0.0
        self.unfilled: list[MissedInterval] = []

    def play(self, frames: Sequence[list[Trade]], frame_fates: Sequence[Fate]) -> Outcome:
        for step, (frame, fate) in enumerate(zip(frames, frame_fates, strict=True)):
            for trade in frame:
                self.printed[trade.symbol].append(trade)
            if fate.how in (DELIVER, REPEAT):
                self._send(step, "update", frame)
            if fate.how in (REPEAT, DELAY):
                self._send(step + fate.later, "update", frame)
            self._arrive(step)
            if fate.then == TICK:
                self._tick(step, fate)
            elif fate.then == RECONNECT:
                self._reconnect(step)
        # A clean end: what is in flight arrives, then each symbol's snapshot (the drain).
        self._arrive(len(frames) + 100)
        for symbol in SYMBOLS:
            self.sequencer.resync_asked(symbol, self.now)
            self.receive("snapshot", self.printed[symbol][-SNAPSHOT_TRADES:])
        while True:  # as the streamer ends: until no hole is left to backfill
            ready: list[Trade] = []
            self.sequencer.end(ready)
            self._collect(ready)
            if not self.unfilled or not self.backfill:
                return self.out
            self._fill()

    def _send(self, step: int, kind: str, trades: list[Trade]) -> None:
        self.order += 1
        self.in_flight.append((step, self.order, kind, list(trades)))

    def _arrive(self, step: int) -> None:
        self.in_flight.sort()
        while self.in_flight and self.in_flight[0][0] <= step:
            _, _, kind, trades = self.in_flight.pop(0)
            self.now += 0.001
            self.receive(kind, trades)

    def receive(self, kind: str, trades: list[Trade]) -> None:
        ready: list[Trade] = []
        if kind == "snapshot":
            self.sequencer.snapshot(trades, ready)
        else:
            self.sequencer.updates(trades, self.now, ready)
        self._collect(ready)
        self._fill()  # the streamer backfills before it reads the next frame

    def _collect(self, ready: list[Trade]) -> None:
        for trade in ready:
            self.out.trades[trade.symbol].append(trade)
        holes = self.sequencer.take_holes()
        self.out.holes.extend(holes)
        self.unfilled.extend(holes)

    def _fill(self) -> None:
        if not self.backfill:
            return
        while self.unfilled:
            hole = self.unfilled.pop(0)
            # REST answers by time span, and lacks some trades (its history is not complete).
            fetched = [t for t in self.truth[hole.symbol]
                       if hole.from_us <= t.ts_us < hole.to_us and t.trade_id % 97 not in self.rest_lacks]
            ready: list[Trade] = []
            brought, left = self.sequencer.fill(hole, fetched, ready)
            self.out.filled += brought
            self.out.left.extend(left)
            self._collect(ready)

    def _tick(self, step: int, fate: Fate) -> None:
        self.now += fate.seconds
        ready: list[Trade] = []
        due = self.sequencer.due(self.now, ready)
        self._collect(ready)  # holes found here wait for the next frame, as in the streamer
        for symbol in due:
            self.sequencer.resync_asked(symbol, self.now)
            if not fate.snapshot_lost:
                self._send(step + fate.later % 3, "snapshot", self.printed[symbol][-SNAPSHOT_TRADES:])

    def _reconnect(self, step: int) -> None:
        self.in_flight.clear()  # what was on the old connection is gone
        self.sequencer.reconnecting()
        self.sequencer.connected()
        self._fill()  # a backfill the old connection did not finish comes first
        for symbol in SYMBOLS:  # every subscription again, each with its snapshot
            self._send(step, "snapshot", self.printed[symbol][-SNAPSHOT_TRADES:])
        self._arrive(step)


def _frames(truth: dict[str, list[Trade]], sizes: Sequence[int]) -> list[list[Trade]]:
    """The trades of all symbols as the exchange prints them (by time), cut into frames of
    ``sizes`` trades (cycled)."""
    printed = sorted((t for trades in truth.values() for t in trades), key=lambda t: (t.ts_us, t.symbol))
    frames: list[list[Trade]] = []
    index = 0
    while index < len(printed):
        size = sizes[len(frames) % len(sizes)]
        frames.append(printed[index:index + size])
        index += size
    return frames


def _check(truth: dict[str, list[Trade]], out: Outcome, first_ids: dict[str, int], backfill: bool) -> None:
    reported = out.left if backfill else out.holes
    for symbol, true_trades in truth.items():
        got = out.trades[symbol]
        ids = [t.trade_id for t in got]
        # Never a duplicate, always in the exchange's order, each trade as the exchange printed it.
        assert ids == sorted(set(ids)), f"{symbol}: duplicated or out of order: {ids}"
        by_id = {t.trade_id: t for t in true_trades}
        assert all(by_id[t.trade_id] == t for t in got)
        # The stream ends with the drain's snapshot: nothing after the last trade is missing.
        assert ids and ids[-1] == true_trades[-1].trade_id
        # Never a silent loss: every trade missing since the stream's start lies in a reported
        # hole, and no reported hole holds a trade that came out.
        assert ids[0] >= first_ids[symbol]
        missing = set(range(first_ids[symbol], ids[-1] + 1)) - set(ids)
        holes = [h for h in reported if h.symbol == symbol]
        in_holes = [i for h in holes for i in range(h.first_trade_id, h.last_trade_id + 1)]
        assert len(in_holes) == len(set(in_holes)), f"{symbol}: a trade reported twice: {holes}"
        assert missing == set(in_holes), f"{symbol}: missing {sorted(missing)}, reported {holes}"
        for hole in holes:  # a hole's time span covers its trades, for REST to find them
            assert all(hole.from_us <= by_id[i].ts_us < hole.to_us
                       for i in range(hole.first_trade_id, hole.last_trade_id + 1))
        if backfill and not holes:  # REST had every missing trade: the whole sequence came out
            assert got == [t for t in true_trades if t.trade_id >= first_ids[symbol]]


def _run(truth: dict[str, list[Trade]], sizes: list[int], frame_fates: list[Fate], backfill: bool,
         rest_lacks: frozenset[int], resume: bool, history: int) -> Outcome:
    """Stream ``truth``: its first ``history`` trades of each symbol were printed before the
    subscription (its snapshot opens the stream), the rest come in frames through the wire.
    With ``resume`` the sequencer resumes from the trade before the first one (a restart)."""
    run = _Run(truth, backfill, rest_lacks, resume)
    first_ids = {}
    for symbol, trades in truth.items():
        before = trades[:history]
        run.printed[symbol].extend(before)
        first_ids[symbol] = trades[0].trade_id if resume else before[-SNAPSHOT_TRADES:][0].trade_id
        run.receive("snapshot", before[-SNAPSHOT_TRADES:])
    live = {symbol: trades[history:] for symbol, trades in truth.items()}
    frames = _frames(live, sizes)
    padded = (frame_fates * (len(frames) // len(frame_fates) + 1))[:len(frames)]
    out = run.play(frames, padded)
    _check(truth, out, first_ids, backfill)
    out.counts = run.sequencer.counts
    return out


def _events(out: Outcome) -> None:
    """Shown by --hypothesis-show-statistics: the cases cover every path, not just clean wires."""
    event(f"holes reported: {bool(out.holes)}, left by the backfill: {bool(out.left)}")
    event(f"duplicates: {out.counts.duplicate_trades > 0}, reordered: {out.counts.reordered_trades > 0}")


# --- true sequences ---------------------------------------------------------------------------

def _relabel(trades: Sequence[Trade], symbol: str) -> list[Trade]:
    return [Trade(symbol, t.trade_id, t.ts_us, t.price, t.qty, t.side) for t in trades]


@pytest.fixture(scope="module")
def real_trades(shared_data: Path) -> dict[str, list[Trade]]:
    """The real trades standing for the two symbols."""
    return {"XRP/USDT": list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", "XRP/USDT")),
            "BTC/USDT": list(trades_from_file(shared_data / "kraken_bch-eur_trades.csv", "BTC/USDT"))}


@st.composite
def generated_truth(draw: st.DrawFn) -> dict[str, list[Trade]]:
    """Two symbols' sequences: consecutive ids from any start, times that never go back."""
    truth = {}
    for symbol in SYMBOLS:
        first_id = draw(st.integers(1, 10**12))
        steps = draw(st.lists(st.integers(0, 3_000_000), min_size=5, max_size=80))
        ts, trades = START_US, []
        for offset, step in enumerate(steps):
            ts += step
            trades.append(Trade(symbol, first_id + offset, ts, 1.0 + offset % 7, 0.5, Side.BUY))
        truth[symbol] = trades
    return truth


wire = {
    "sizes": st.lists(st.integers(1, 3), min_size=1, max_size=6),
    "frame_fates": st.lists(fates, min_size=1, max_size=60),
    "backfill": st.booleans(),
    "rest_lacks": st.frozensets(st.integers(0, 96), max_size=30),
    "resume": st.booleans(),
    "history": st.integers(1, 12),
}


@settings(max_examples=300, deadline=None)
@given(truth=generated_truth(), **wire)
def test_generated_sequences_come_out_whole_or_with_their_holes_reported(
        truth: dict[str, list[Trade]], sizes: list[int], frame_fates: list[Fate], backfill: bool,
        rest_lacks: frozenset[int], resume: bool, history: int) -> None:
    _events(_run(truth, sizes, frame_fates, backfill, rest_lacks, resume, history))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), **wire)
def test_real_sequences_come_out_whole_or_with_their_holes_reported(
        real_trades: dict[str, list[Trade]], data: st.DataObject, sizes: list[int],
        frame_fates: list[Fate], backfill: bool, rest_lacks: frozenset[int], resume: bool,
        history: int) -> None:
    truth = {}
    for symbol, trades in real_trades.items():
        length = data.draw(st.integers(1, min(150, len(trades))), label=f"{symbol} trades")
        start = data.draw(st.integers(0, len(trades) - length), label=f"{symbol} start")
        truth[symbol] = _relabel(trades[start:start + length], symbol)
    _events(_run(truth, sizes, frame_fates, backfill, rest_lacks, resume, history))


def _steady(count: int) -> dict[str, list[Trade]]:
    return {s: [Trade(s, 100 + i, START_US + i * 1000, 1.0, 1.0, Side.SELL) for i in range(count)]
            for s in SYMBOLS}


def test_a_perfect_wire_gives_the_sequence_and_no_hole() -> None:
    truth = _steady(30)
    out = _run(truth, [2], [Fate(DELIVER, 1, None, 0.0, False)], False, frozenset(), False, 1)
    assert out.holes == [] and out.trades == truth


def test_a_dropped_frame_is_a_reported_hole_when_no_snapshot_reaches_back() -> None:
    truth = _steady(40)
    # One trade a frame (BTC/USDT before XRP/USDT at each time): drop id 105 of both, and no
    # clock tick makes the gap due, so only the drain's snapshot (5 trades) sees it.
    keep = Fate(DELIVER, 1, None, 0.0, True)
    frame_fates = [keep] * 8 + [Fate(DROP, 1, None, 0.0, True)] * 2 + [keep] * 68
    out = _run(truth, [1], frame_fates, False, frozenset(), False, 1)
    assert [(h.symbol, h.first_trade_id, h.last_trade_id, h.reason) for h in out.holes] == [
        ("XRP/USDT", 105, 105, "gap"), ("BTC/USDT", 105, 105, "gap")]


def test_a_gap_due_is_closed_by_the_snapshot_it_asks() -> None:
    truth = _steady(40)
    keep = Fate(DELIVER, 1, None, 0.0, False)
    # Drop id 105 of both; a tick once both 106 came makes both gaps due, and their snapshots
    # (the last 5 trades) still reach back to 105.
    frame_fates = [keep] * 8 + [Fate(DROP, 1, None, 0.0, False)] * 2 + [keep] + [
        Fate(DELIVER, 1, TICK, 0.3, False)] + [keep] * 66
    out = _run(truth, [1], frame_fates, False, frozenset(), False, 1)
    assert out.holes == [] and out.trades == truth


def test_a_hole_across_a_restart_is_backfilled() -> None:
    truth = _steady(40)
    # The streamer was down for ids 100..119: its subscription's snapshot holds 115..119.
    out = _run(truth, [1], [Fate(DELIVER, 1, None, 0.0, False)], True, frozenset(), True, 20)
    assert [(h.first_trade_id, h.last_trade_id, h.reason) for h in out.holes] == [
        (100, 114, "reconnect")] * 2
    assert out.left == [] and out.filled == 30 and out.trades == truth


def test_a_symbol_is_in_step_only_while_nothing_of_it_can_be_missing() -> None:
    """Quiet minutes are taken only for a symbol in step: a trade known, nothing held or being
    backfilled, and its snapshot (or next trade) seen since a reconnection or a restart."""
    def trade(trade_id: int) -> Trade:
        return Trade("XRP/USDT", trade_id, START_US + trade_id * 1000, 1.0, 1.0, Side.BUY)

    sequencer = TradeSequencer(["XRP/USDT"], backfill=True)
    ready: list[Trade] = []
    assert not sequencer.in_step("XRP/USDT")  # nothing known yet
    sequencer.updates([trade(1)], 0.0, ready)
    assert sequencer.in_step("XRP/USDT")
    sequencer.updates([trade(3)], 0.0, ready)  # 2 is late or lost: 3 is held
    assert not sequencer.in_step("XRP/USDT")
    sequencer.updates([trade(2)], 0.0, ready)
    assert sequencer.in_step("XRP/USDT") and [t.trade_id for t in ready] == [1, 2, 3]
    sequencer.reconnecting()
    assert not sequencer.in_step("XRP/USDT")  # trades may have printed while away
    sequencer.snapshot([trade(2), trade(3)], ready)  # nothing new: the feed is whole
    assert sequencer.in_step("XRP/USDT")
    sequencer.reconnecting()
    sequencer.snapshot([trade(9), trade(10)], ready)  # 4..8 missed: backfill due
    assert not sequencer.in_step("XRP/USDT")
    (hole,) = sequencer.take_holes()
    sequencer.fill(hole, [trade(i) for i in range(4, 9)], ready)
    assert sequencer.in_step("XRP/USDT") and [t.trade_id for t in ready][-7:] == list(range(4, 11))
    restarted = TradeSequencer(["XRP/USDT"], resume_from={"XRP/USDT": TradeMark(10, 0)})
    assert not restarted.in_step("XRP/USDT")
