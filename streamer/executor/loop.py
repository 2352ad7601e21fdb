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

Each cycle first judges the market's age (:mod:`triplegain_core.risk.guards`): the newest
market data it read (candle closes, trade prices' times) and the streamer's heartbeat go to
the kernel's stale-market guard, which judges them on the loop's clock (``clock``: the wall
clock live, as ``triplegain execute`` passes it; by default a replay's market clock). While the
market is older than ``guards.stale_market_s`` no entry is placed (the ``STALE_MARKET`` block)
and no decision trades: the decisions read meanwhile are held, unjudged and still APPROVED in
their lifecycle, until fresh data returns; then they are judged for expiry (on market time,
and on the wall clock too when the loop runs on it) and traded or refused as any other.

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
from triplegain_core.contracts.hot_state import (
    CLOSED_CANDLES_MAXLEN,
    RECENT_CANDLES_CAP,
    CyclePoll,
    HotStateReader,
    entry_id,
)
from triplegain_core.decisions.gate_queue import GateQueue
from triplegain_core.decisions.intake import DecisionIntake
from triplegain_core.execution.audit import AuditSink
from triplegain_core.execution.control import ControlAction, ControlCommand, halted_by
from triplegain_core.execution.kernel import KernelStats, TradingKernel
from triplegain_core.marketdata.live_market import BOOK_MAX_AGE_US, book_top
from triplegain_core.marketdata.snapshot import BookTop
from triplegain_core.model.market import Candle, datetime_to_us, us_to_datetime
from triplegain_core.risk.guards import BreakerFailure, MarketClock
from triplegain_core.storage.checkpoints import CheckpointStore, LoopProgress
from triplegain_core.storage.control_store import ControlStore, ControlWatch
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
    ``agent``, ``strategies``, ``decisions``, ``strong_signals``, ``gate``, ``gate_store`` and
    ``clock`` go to it (see :class:`TradingKernel`), and its orders fill against the hot state's
    books. A loop trading the live market passes the wall clock
    (:class:`~triplegain_core.risk.guards.WallClock`); without ``clock`` the market's age is
    judged on a replay's market clock.
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
        clock: MarketClock | None = None,
        checkpoints: CheckpointStore | None = None,
        controls: ControlStore | None = None,
        control_watch: ControlWatch | None = None,
    ) -> None:
        self._settings = settings
        self._hot_state = hot_state
        self._store = store
        self._kernel_parts = (agent, decisions, strong_signals, gate, gate_store, clock)
        self.kernel = TradingKernel(settings, store, agent=agent, strategies=strategies,
                                    books=HotStateBooks(hot_state), decisions=decisions,
                                    strong_signals=strong_signals, gate=gate, gate_audit=gate_store,
                                    clock=clock)
        """The decision path this loop hosts: its accounts, strategies and market view."""
        self._intake = decisions
        self._gate = gate
        self._checkpoints = checkpoints
        self._controls = controls
        self._control_watch = control_watch
        # The newest control command applied (each is applied once, in order).
        self._control_id = 0
        self._start_stream_id = start_stream_id
        # Set by restore(): the next cycle is the first with the restored state (logged).
        self._restored_at: float | None = None
        self._stream_id = start_stream_id
        # The public tape is read only when some strategy reads it (order flow), from the same
        # point as the candles: all of a replay, or only what is new to a live loop.
        reads_tape = self.kernel.reads_trades
        self._trades_id: str | None = ("0" if start_stream_id == "0" else "$") if reads_tape else None
        self._start_trades_id = self._trades_id
        self._feed: HotStateFeed | None = None
        # Decision stream entries read before the market's time was known, or while the market
        # was stale (see _cycle_on).
        self._unjudged: list[tuple[bytes, Mapping[bytes, bytes]]] = []
        # The feed's reads already handed to the kernel (a later one means the hot state answered).
        self._reads_seen = 0
        # Failed writes to count for the failure breaker on the next cycle (count_failed_writes).
        self._failed_writes = 0
        self._failed_writes_detail = ""

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
        self._idle_ms = idle_ms
        feed = self._start_feed()
        try:
            yield feed
        finally:
            feed = self._feed or feed  # restore() may have started another
            feed.stop()
            self._feed = None
            if not feed.failed:
                self._cycle_on(time.perf_counter(), feed.take())
            # Read again from the intake's own position by the cycles that follow.
            self._unjudged = []

    def _start_feed(self) -> HotStateFeed:
        self._reads_seen = 0
        intake = self._intake
        extra = {DECISIONS_STREAM: intake.last_id} if intake is not None and intake.follows_hot_state else None
        feed = HotStateFeed(self._hot_state, self._settings.symbols, self._stream_id,
                            trades_after=self._trades_id, extra_streams=extra, idle_ms=self._idle_ms)
        self._feed = feed
        feed.start()
        return feed

    def restore(self) -> bool:
        """Rebuild the kernel's accounts from the checkpoint in PostgreSQL and rewind the
        streams to it; False when there is none (a fresh start: the loop starts as configured).

        The kernel is built anew and its market history warmed with the closed candles up to
        the checkpoint's stream id (as many as fill every timeframe's window), so it decides
        the next candle as a loop that never stopped would; every account (LLM accounts too)
        gets its balances, positions, working orders, risk state and counters back, each
        strategy what it remembered and what its account holds; reading continues after the
        checkpoint's ids. A halt in force is restored too. Usable on a running loop (after a
        cycle's transaction was rolled back): a feed reading is restarted at the checkpoint.
        """
        checkpoint = self._checkpoints.load() if self._checkpoints is not None else None
        fresh = self.kernel.market_time_us is None and checkpoint is None
        if not fresh:
            self._rebuild_kernel()
        if checkpoint is None:
            self._stream_id, self._trades_id = self._start_stream_id, self._start_trades_id
            # A fresh executor applies no command given before it started; a halt stays in force.
            self._control_id = self._controls.newest_id() if self._controls is not None else 0
        else:
            progress = checkpoint.progress
            kernel = self.kernel
            history = self._hot_state.recent_history(self._settings.symbols, WARM_START_CANDLES,
                                                      higher=kernel.market.timeframes[1:]).higher
            count = min(kernel.history_minutes * len(self._settings.symbols), CLOSED_CANDLES_MAXLEN)
            candles = self._hot_state.closed_candles_up_to(progress.candles_id, count)
            by_symbol: dict[str, list[Candle]] = {}
            for candle in candles:
                by_symbol.setdefault(candle.symbol, []).append(candle)
            # The state first: warming judges the market again, and finds the blocks it held.
            unknown = kernel.import_state(checkpoint.kernel)
            taken = kernel.warm(by_symbol, history)
            self._stream_id = progress.candles_id
            self._trades_id = progress.trades_id if kernel.reads_trades else None
            self._control_id = progress.control_id
            log.info("restored %d accounts from the checkpoint (%d candles of history), reading the stream after"
                     " %s%s", len(checkpoint.kernel.accounts) - len(unknown), taken, self._stream_id,
                     f"; not traded any more: {', '.join(unknown)}" if unknown else "")
        self._restore_halt()
        self._unjudged = []
        if self._feed is not None:
            self._feed.stop()
            self._start_feed()
        self._restored_at = time.perf_counter()
        return checkpoint is not None

    def _rebuild_kernel(self) -> None:
        """A new kernel with the same parts, entry blocks and cycle statistics, and no state."""
        old = self.kernel
        agent, decisions, strong_signals, gate, gate_store, clock = self._kernel_parts
        kernel = TradingKernel(self._settings, self._store, agent=agent, strategies=old.strategies,
                               books=HotStateBooks(self._hot_state), decisions=decisions,
                               strong_signals=strong_signals, gate=gate, gate_audit=gate_store, clock=clock)
        kernel.strategy_reports = old.strategy_reports
        for block in old.entry_blocks:
            kernel.entry_blocks.set(block.reason, block.since, block.detail)
        kernel.stats.cycles, kernel.stats.cycle_ms, kernel.stats.decision_ms = (
            old.stats.cycles, old.stats.cycle_ms, old.stats.decision_ms)
        self.kernel = kernel

    def _restore_halt(self) -> None:
        """Halt the kernel when the commands applied so far leave trading halted."""
        if self._controls is None:
            return
        halt = halted_by(c for c in self._controls.after(0) if c.control_id <= self._control_id)
        if halt is None:
            self.kernel.resume()
        else:
            self.kernel.halt(halt.created_at, halt.describe())
            log.warning("trading is halted: %s", halt.describe())

    def cycle(self) -> int:
        """One pass of the loop; returns the number of closed candles processed."""
        started = time.perf_counter()
        if self._feed is None:
            return self._cycle_on(started, self._read())
        feed, kernel = self._feed, self.kernel
        failures = feed.take_failures()
        if failures:
            # Reads the feed could not make (Redis out of reach) count for the failure breaker,
            # and the market went unseen: what it reaches meanwhile is acted on when seen again.
            kernel.record_failure(BreakerFailure.READ, "hot state out of reach", failures)
            kernel.lose_sight()
        with feed.cycle() as polled:
            if kernel.blind and feed.reads_taken > self._reads_seen:
                kernel.regain_sight(polled.prices, polled.candles)
            self._reads_seen = feed.reads_taken
            return self._cycle_on(started, polled)

    def count_failed_writes(self, count: int, detail: str) -> None:
        """``count`` writes to PostgreSQL failed (the host's, outside any cycle); the failure
        breaker counts them on the next cycle, after whatever a restore brought back."""
        self._failed_writes += count
        self._failed_writes_detail = detail

    def _read(self) -> CyclePoll:
        """What is new in the hot state, read now (one round trip)."""
        if self._stream_id == "$":
            self.warm_start()
        # Decisions are read in the same round trip once the loop knows the market's time (an
        # entry read before that could not be judged for expiry).
        intake = self._intake
        now_known = self.kernel.now_us() is not None
        # After the decisions held back (a stale market), not again from the intake's position.
        # (A consumer group delivers decisions on a thread of its own: not read here.)
        after = entry_id(self._unjudged[-1][0]) if self._unjudged else intake.last_id if intake else ""
        extra = {DECISIONS_STREAM: after} if intake is not None and now_known and intake.follows_hot_state \
            else None
        return self._hot_state.poll(self._stream_id, self._settings.symbols, trades_after=self._trades_id,
                                    extra_streams=extra)

    def _cycle_on(self, started: float, polled: CyclePoll) -> int:
        """The cycle's work on what it read; returns the number of closed candles processed.

        With a checkpoint store, the cycle is one transaction: begun at once when it has
        candles, decisions, verdicts or commands to act on, else at its first write (none on
        most ticks); it ends with the checkpoint of what changed."""
        commands = self._new_commands()
        if self._checkpoints is None:
            return self._work(started, polled, commands)
        eager = bool(polled.candles or polled.extra or commands or (self._gate is not None and self._gate.awaiting()))
        transactions = self._checkpoints.transactions
        with transactions.cycle(eager=eager):
            count = self._work(started, polled, commands)
            if transactions.begun:
                progress = LoopProgress(candles_id=self._stream_id, trades_id=self._trades_id,
                                        control_id=self._control_id)
                self._checkpoints.save(progress, self.kernel.export_state(changed_only=True))
        if self._restored_at is not None:
            log.info("first cycle with the restored state done %.1f ms after the restore",
                     (time.perf_counter() - self._restored_at) * 1000)
            self._restored_at = None
        return count

    def _new_commands(self) -> list[ControlCommand]:
        """The control commands given since the last applied (read only when the watch saw one,
        or, without a watch, on every cycle)."""
        controls = self._controls
        if controls is None:
            return []
        watch = self._control_watch
        if watch is not None and watch.newest <= self._control_id:
            return []
        return controls.after(self._control_id)

    def _apply(self, command: ControlCommand) -> None:
        """Apply one control command to the kernel (in the cycle's transaction)."""
        kernel = self.kernel
        now_us = kernel.now_us()
        since = command.created_at if now_us is None else us_to_datetime(now_us)
        if command.action is ControlAction.HALT:
            kernel.halt(since, command.describe())
            log.warning("trading halted: %s", command.describe())
            if command.cancel_orders:
                log.warning("%d working orders cancelled", kernel.cancel_working_orders(f"halt: {command.describe()}"))
            if command.flatten:
                closed = kernel.flatten()
                log.warning("flattened: %d positions closed %s", len(closed), closed)
        elif command.action is ControlAction.RESUME:
            log.warning("trading resumed: %s" if kernel.resume() else "resume: trading was not halted (%s)",
                        command.describe())
        elif command.position_id is not None:
            if kernel.close_position(command.position_id):
                log.warning("position %s closed by hand: %s", command.position_id, command.describe())
            else:
                log.error("position %s is not open on this executor's accounts (or has no price): not closed",
                          command.position_id)
        self._control_id = command.control_id

    def _work(self, started: float, polled: CyclePoll, commands: list[ControlCommand]) -> int:
        """What one cycle does with what it read, and the commands given since the last."""
        self._stream_id, self._trades_id = polled.last_id, polled.trades_id
        kernel, candles = self.kernel, polled.candles
        if self._failed_writes:
            kernel.record_failure(BreakerFailure.WRITE, self._failed_writes_detail, self._failed_writes)
            self._failed_writes = 0
        # Commands first: after a halt, not one more entry; a flatten at the latest known prices.
        for command in commands:
            self._apply(command)
        stale = self._judge_market(polled)
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
            # While the market is stale they wait too: none may trade at a price that old.
            if now_us is not None and not stale:
                entries, self._unjudged = self._unjudged, []
                clock = kernel.guards.clock
                kernel.on_decisions(self._intake.poll(now_us, entries,
                                                      clock_us=clock.now_us() if clock.live else None))
        kernel.stats.cycles += 1
        kernel.stats.cycle_ms.append((time.perf_counter() - started) * 1000)
        return len(candles)

    def _judge_market(self, polled: CyclePoll) -> bool:
        """Hand the kernel's stale-market guard what this cycle read, and judge; whether the
        market is stale."""
        kernel = self.kernel
        if polled.candles:
            kernel.observe_market(max(candle.close_time_us for candle in polled.candles))
        for last in polled.prices.values():
            kernel.observe_market(last.ts_us)
        beat = polled.heartbeat
        last_trade = beat.last_trade_ts_us if beat is not None and isinstance(beat.last_trade_ts_us, int) else None
        beat_us = beat.ts_us if beat is not None and isinstance(beat.ts_us, int) else None
        kernel.observe_streamer(beat_us, last_trade)
        return kernel.check_guards()


def settle_heap() -> None:
    """Collect once, then exempt everything alive from later collections (``gc.freeze``).

    Called once the loop is set up and warm: the imported modules, the configuration and the
    candle history are what the heap mostly holds, and a full collection walking them all
    stalls a cycle for tens of milliseconds. Frozen, they are never walked again; what the
    loop allocates later is collected as usual.
    """
    gc.collect()
    gc.freeze()
