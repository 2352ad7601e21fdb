"""The trading loop: the trading kernel on the hot state's 100 ms grid.

Each cycle (100 ms by default) the loop takes what is new in the hot state (the closed 1m
candles the streamer published since the last cycle, the latest trade prices and books, the
public trades, the deliberated decisions) and hands it to its
:class:`~triplegain_core.execution.kernel.TradingKernel`, which acts on every account: exits,
trailing stops, the TechnicalAgent and the strategies, routing, decisions, snapshots. Each
cycle with closed candles hands the kernel those (decided moment by moment); a cycle without
hands it the latest trade prices instead.

Deliberated decisions arrive on the Redis decision stream; a
:class:`~triplegain_core.decisions.intake.DecisionIntake` parses them and refuses the expired
ones (on the kernel's market time) before the kernel trades the rest. The signals of gated
strategies wait at the confirmation gate (a :class:`~triplegain_core.decisions.gate_queue.GateQueue`,
off the loop); its verdicts are collected each cycle and handed to the kernel.

A loop started at the stream's end ("$") first warms up (:meth:`TradingLoop.warm_start`): its
kernel's history is filled from the hot state's recent closed candles of every timeframe it
reads, without deciding on any of them, so it trades on the next new candle as a loop that had
seen the whole stream would.

While :meth:`TradingLoop.run` runs, the hot state is read by a
:class:`~streamer.executor.feed.HotStateFeed` thread; each cycle takes what it gathered,
without a round trip of its own, and the feed reads in the gaps between cycles. An order
fills against the book freshly published in the hot state (:class:`HotStateBooks`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime

from streamer.executor.feed import IDLE_MS, HotStateFeed
from triplegain_core.analysis.technical_agent import TechnicalAgent
from triplegain_core.config import Settings
from triplegain_core.contracts.decision_streams import DECISIONS_STREAM, StrongSignalStream
from triplegain_core.contracts.hot_state import RECENT_CANDLES_CAP, CyclePoll, HotStateReader
from triplegain_core.decisions.gate_queue import GateQueue
from triplegain_core.decisions.intake import DecisionIntake
from triplegain_core.execution.audit import AuditSink
from triplegain_core.execution.kernel import KernelStats, TradingKernel
from triplegain_core.marketdata.live_market import BOOK_MAX_AGE_US, book_top
from triplegain_core.marketdata.snapshot import BookTop
from triplegain_core.model.market import datetime_to_us
from triplegain_core.storage.gate_store import GateStore
from triplegain_core.strategies.registry import LoadedStrategy

log = logging.getLogger(__name__)

# All the recent candles the hot state keeps: the longest history a restart can have.
WARM_START_CANDLES = RECENT_CANDLES_CAP


class HotStateBooks:
    """The book an order fills against: the one published in the hot state, read fresh at the
    moment of the order."""

    def __init__(self, hot_state: HotStateReader) -> None:
        self._hot_state = hot_state

    def book(self, symbol: str, when: datetime) -> BookTop | None:
        """The published book of ``symbol`` when it is close enough to ``when``, else None."""
        snapshot = self._hot_state.books([symbol]).get(symbol)
        if snapshot is None or abs(snapshot.ts_us - datetime_to_us(when)) > BOOK_MAX_AGE_US:
            return None
        return book_top(snapshot)


class TradingLoop:
    """Hosts a :class:`TradingKernel` on the hot state: the feed, the 100 ms grid, the warm start.

    The accounts, their strategies and the market view are the kernel's (:attr:`kernel`);
    ``agent``, ``strategies``, ``decisions``, ``strong_signals``, ``gate`` and ``gate_store``
    go to it (see :class:`TradingKernel`), and its orders fill against the hot state's books.
    """

    def __init__(
        self,
        settings: Settings,
        hot_state: HotStateReader,
        store: AuditSink,
        *,
        agent: TechnicalAgent | None = None,
        strategies: Iterable[LoadedStrategy] | None = None,
        start_stream_id: str = "$",
        decisions: DecisionIntake | None = None,
        strong_signals: StrongSignalStream | None = None,
        gate: GateQueue | None = None,
        gate_store: GateStore | None = None,
    ) -> None:
        self._settings = settings
        self._hot_state = hot_state
        self.kernel = TradingKernel(settings, store, agent=agent, strategies=strategies,
                                    books=HotStateBooks(hot_state), decisions=decisions,
                                    strong_signals=strong_signals, gate=gate, gate_audit=gate_store)
        """The decision path this loop hosts: its accounts, strategies and market view."""
        self._intake = decisions
        self._gate = gate
        self._stream_id = start_stream_id
        # The public tape is read only when some strategy reads it (order flow), from the same
        # point as the candles: all of a replay, or only what is new to a live loop.
        reads_tape = self.kernel.reads_trades
        self._trades_id: str | None = ("0" if start_stream_id == "0" else "$") if reads_tape else None
        self._feed: HotStateFeed | None = None
        # Decision stream entries read before the market's time was known (see _cycle_on).
        self._unjudged: list[tuple[bytes, Mapping[bytes, bytes]]] = []

    @property
    def stats(self) -> KernelStats:
        """The kernel's counters and the loop's cycle times."""
        return self.kernel.stats

    @property
    def intake(self) -> DecisionIntake | None:
        """Where the loop reads deliberated decisions from, if anywhere."""
        return self._intake

    async def run(self, stop: asyncio.Event, drain_before_stop: bool = True) -> KernelStats:
        """Cycle every ``loop_interval_s`` until ``stop`` is set, then drain what is left."""
        interval = self._settings.loop_interval_s
        await asyncio.to_thread(self.warm_start)
        settle_heap()
        next_tick = time.monotonic()
        with self.feeding():
            while not stop.is_set():
                await asyncio.to_thread(self.cycle)
                # Schedule against a fixed grid so the loop does not drift with cycle time.
                next_tick += interval
                delay = next_tick - time.monotonic()
                if delay < 0:
                    next_tick = time.monotonic()
                    delay = 0
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        if drain_before_stop:
            while await asyncio.to_thread(self.cycle):
                pass
        await asyncio.to_thread(self.kernel.record_snapshot)
        return self.stats

    def warm_start(self) -> int:
        """Fill the market history from the hot state's recent closed candles, 1m and every
        higher timeframe the strategies read, so the 5m and 1h strategies need not wait hours
        (or days) for theirs; the number of candles taken.

        Only a loop that starts at the stream's end ("$") warms up, once: it then reads the
        stream from the newest entry the recent candles include. Nothing is decided on these
        candles (no signal, no order); the next new candle is decided on a full history.
        """
        if self._stream_id != "$":
            return 0
        recent = self._hot_state.recent_history(self._settings.symbols, WARM_START_CANDLES,
                                                higher=self.kernel.market.timeframes[1:])
        self._stream_id = recent.last_id
        taken = self.kernel.warm(recent.candles, recent.higher)
        log.info("warm start: %d recent candles taken, reading the stream after %s", taken, self._stream_id)
        return taken

    @contextmanager
    def feeding(self, idle_ms: int = IDLE_MS) -> Iterator[HotStateFeed]:
        """Read the hot state on a :class:`~streamer.executor.feed.HotStateFeed` thread while
        inside: each cycle then takes what the feed gathered, without a round trip to Redis.

        On leaving, the feed's last reads are processed as one more cycle, so nothing it read
        is lost; later cycles read the hot state themselves again, from where it stopped.
        """
        if self._stream_id == "$":
            self.warm_start()
        intake = self._intake
        extra = {DECISIONS_STREAM: intake.last_id} if intake is not None and intake.follows_hot_state else None
        feed = HotStateFeed(self._hot_state, self._settings.symbols, self._stream_id,
                            trades_after=self._trades_id, extra_streams=extra, idle_ms=idle_ms)
        self._feed = feed
        feed.start()
        try:
            yield feed
        finally:
            feed.stop()
            self._feed = None
            if not feed.failed:
                self._cycle_on(time.perf_counter(), feed.take())
            # Read again from the intake's own position by the cycles that follow.
            self._unjudged = []

    def cycle(self) -> int:
        """One pass of the loop; returns the number of closed candles processed."""
        started = time.perf_counter()
        if self._feed is None:
            return self._cycle_on(started, self._read())
        with self._feed.cycle() as polled:
            return self._cycle_on(started, polled)

    def _read(self) -> CyclePoll:
        """What is new in the hot state, read now (one round trip)."""
        if self._stream_id == "$":
            self.warm_start()
        # Decisions are read in the same round trip once the loop knows the market's time (an
        # entry read before that could not be judged for expiry).
        intake = self._intake
        now_known = self.kernel.now_us() is not None
        # (A consumer group delivers decisions on a thread of its own: not read here.)
        extra = {DECISIONS_STREAM: intake.last_id} if intake is not None and now_known and \
            intake.follows_hot_state else None
        return self._hot_state.poll(self._stream_id, self._settings.symbols, trades_after=self._trades_id,
                                    extra_streams=extra)

    def _cycle_on(self, started: float, polled: CyclePoll) -> int:
        """The cycle's work on what it read; returns the number of closed candles processed."""
        self._stream_id, self._trades_id = polled.last_id, polled.trades_id
        kernel, candles = self.kernel, polled.candles
        kernel.on_books(polled.books)
        kernel.on_trades(polled.trades)
        if candles:
            kernel.on_candles(candles)
        else:
            kernel.on_ticks(polled.prices)
        if self._gate is not None:
            kernel.on_gate_verdicts(self._gate.collect())
        if self._intake is not None:
            # A feed reads decisions from the start; one read before the market's time is known
            # waits for it (its expiry could not be judged).
            self._unjudged += polled.extra.get(DECISIONS_STREAM, [])
            now_us = kernel.now_us()
            if now_us is not None:
                entries, self._unjudged = self._unjudged, []
                kernel.on_decisions(self._intake.poll(now_us, entries))
        kernel.stats.cycles += 1
        kernel.stats.cycle_ms.append((time.perf_counter() - started) * 1000)
        return len(candles)


def settle_heap() -> None:
    """Collect once, then exempt everything alive from later collections (``gc.freeze``).

    Called once the loop is set up and warm: the imported modules, the configuration and the
    candle history are what the heap mostly holds, and a full collection walking them all
    stalls a cycle for tens of milliseconds. Frozen, they are never walked again; what the
    loop allocates later is collected as usual.
    """
    gc.collect()
    gc.freeze()
