"""The trading loop: hot state in, risk-checked paper orders out, every step persisted.

Each cycle (100 ms by default) it reads the closed 1m candles the streamer published since
the last cycle and, moment by moment (the candles closing at the same time together), feeds
them to its :class:`~triplegain_core.marketdata.live_market.LiveMarket` (which also builds the higher
timeframes the strategies read), enforces the exits of every account's open positions against
each candle's range (stop, trailing stop, invalidation, take-profit, maximum holding time),
moves the trailing stops, then runs the deciders on that moment: the TechnicalAgent and every
enabled strategy (a :class:`~triplegain_core.strategies.runner.StrategyRunner` over one
:class:`~triplegain_core.marketdata.snapshot.MarketSnapshot`). Each decider trades its own
isolated :class:`~triplegain_core.execution.account.StrategyAccount`: the TechnicalAgent the
base account (``Settings.account``), each strategy ``<account>:<strategy>``. Once the
backlog is drained it does the exit checks against the latest trade prices and runs the
strategies that read more than candles (books, time) on the latest snapshot.

Deliberated decisions arrive on the Redis decision stream (a
:class:`~triplegain_core.decisions.intake.DecisionIntake`): each goes through the RiskAgent of
its own LLM paper account (``llm:<model>``, ``llm:consensus``, ...), opened on its first
decision with the configured starting balances, exactly like any strategy's intent. A signal
at least as strong as ``deliberation.strong_signal_strength`` is published on the strong-signal
stream, where a Dagster sensor asks the models early. The signals of gated strategies go to
the confirmation gate (a :class:`~triplegain_core.decisions.gate_queue.GateQueue`, off the loop) and are
traded on a later cycle only if it confirms them; every verdict is stored.

A loop started at the stream's end ("$") first warms up (:meth:`TradingLoop.warm_start`): its
history is filled from the hot state's recent closed candles of every timeframe it reads,
without deciding on any of them, so it trades on the next new candle as a loop that had seen
the whole stream would.

While :meth:`TradingLoop.run` runs, the hot state is read by a
:class:`~streamer.executor.feed.HotStateFeed` thread; each cycle takes what it gathered,
without a round trip of its own, and the feed reads in the gaps between cycles.

Market time (candle and trade timestamps), not the wall clock, stamps every record, so a
replay gives the same trail as the live run.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime

from streamer.executor.feed import IDLE_MS, HotStateFeed
from triplegain_core.analysis.indicators import MIN_HISTORY
from triplegain_core.analysis.technical_agent import TechnicalAgent
from triplegain_core.config import Settings
from triplegain_core.contracts.decision_streams import (
    DECISIONS_STREAM,
    LLM_ACCOUNT_PREFIX,
    PublishedDecision,
    StrongSignal,
    StrongSignalStream,
)
from triplegain_core.contracts.hot_state import RECENT_CANDLES_CAP, CyclePoll, HotStateReader, LastPrice
from triplegain_core.decisions.gate_queue import GateQueue
from triplegain_core.decisions.intake import DecisionIntake
from triplegain_core.execution.account import AccountStats, StrategyAccount, strategy_account_name
from triplegain_core.execution.order_manager import OrderManager
from triplegain_core.marketdata.live_market import BOOK_MAX_AGE_US, LiveMarket, book_top
from triplegain_core.marketdata.snapshot import BookTop
from triplegain_core.model.market import Candle, datetime_to_us, us_to_datetime
from triplegain_core.model.signals import Direction, TechnicalSignal, TradeIntent
from triplegain_core.portfolio.balances import Portfolio
from triplegain_core.portfolio.positions import PositionTracker
from triplegain_core.risk.rules import MarketRisk, RiskCheck
from triplegain_core.storage.gate_store import GateStore
from triplegain_core.storage.trading_store import TradingStore
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.registry import LoadedStrategy, LoadReport
from triplegain_core.strategies.runner import StrategyRunner
from triplegain_core.strategies.selection import candle_needs, select_strategies, timeframe_of
from triplegain_core.strategies.signal import SignalAction, StrategySignal

log = logging.getLogger(__name__)

HISTORY_LENGTH = max(MIN_HISTORY * 3, 300)
# All the recent candles the hot state keeps: the longest history a restart can have.
WARM_START_CANDLES = RECENT_CANDLES_CAP
CYCLE_SAMPLES = 10_000


@dataclass
class ExecutorStats:
    """Counters of one executor run; signals, approvals, rejections and fills summed over accounts."""

    cycles: int = 0
    candles: int = 0
    # Closed candles taken at start from the hot state's recent candles: history only, not traded.
    warm_candles: int = 0
    accounts: dict[str, AccountStats] = field(default_factory=dict)
    # The latest cycle times only: a service runs for months and must not grow with them.
    cycle_ms: deque[float] = field(default_factory=lambda: deque(maxlen=CYCLE_SAMPLES))
    # The deciding part of each cycle: snapshot, TechnicalAgent and strategies (no I/O).
    decision_ms: deque[float] = field(default_factory=lambda: deque(maxlen=CYCLE_SAMPLES))

    @property
    def signals(self) -> int:
        return sum(a.signals for a in self.accounts.values())

    @property
    def approved(self) -> int:
        return sum(a.approved for a in self.accounts.values())

    @property
    def rejected(self) -> int:
        return sum(a.rejected for a in self.accounts.values())

    @property
    def fills(self) -> int:
        return sum(a.fills for a in self.accounts.values())

    def __str__(self) -> str:
        p, d = percentiles(self.cycle_ms), percentiles(self.decision_ms)
        return (f"cycles={self.cycles} candles={self.candles} accounts={len(self.accounts)} "
                f"signals={self.signals} approved={self.approved} rejected={self.rejected} fills={self.fills} "
                f"cycle_p50_ms={p['p50']:.3f} cycle_p99_ms={p['p99']:.3f} decision_p99_ms={d['p99']:.3f}")


class _HotStateMarket:
    """The shared market every account trades in: the loop's prices and estimates, and the
    published book read fresh from the hot state at the moment of an order."""

    def __init__(self, market: LiveMarket, hot_state: HotStateReader) -> None:
        self._market = market
        self._hot_state = hot_state

    @property
    def prices(self) -> Mapping[str, float]:
        return self._market.prices

    def market_risk(self) -> MarketRisk:
        return self._market.market_risk()

    def book(self, symbol: str, when: datetime) -> BookTop | None:
        snapshot = self._hot_state.books([symbol]).get(symbol)
        if snapshot is None or abs(snapshot.ts_us - datetime_to_us(when)) > BOOK_MAX_AGE_US:
            return None
        return book_top(snapshot)


class TradingLoop:
    """Runs the TechnicalAgent and the enabled strategies, each on its own paper account.

    ``strategies`` defaults to those the configuration enables (``Settings.strategies``),
    discovered and validated; what was left out, and why, is in :attr:`strategy_reports`.
    """

    def __init__(
        self,
        settings: Settings,
        hot_state: HotStateReader,
        store: TradingStore,
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
        self._store = store
        reports: tuple[LoadReport, ...] = ()
        if strategies is None:
            catalog = select_strategies(settings.strategies, settings.symbols)
            strategies, reports = catalog.strategies, catalog.reports
        self.strategy_reports = reports
        strategies = self._strategies = tuple(strategies)
        names = [s.name for s in strategies]
        if len(names) != len(set(names)):
            raise ValueError(f"strategy names must be unique, got {names}")
        # One runner per candle timeframe, each shown only its own series: a 5m strategy is then
        # called again only when a 5m candle closes, not on every 1m close of any symbol.
        groups: dict[str | None, list[LoadedStrategy]] = {}
        for strategy in strategies:
            groups.setdefault(timeframe_of(strategy), []).append(strategy)
        self._runners = tuple((timeframe, StrategyRunner(group)) for timeframe, group in groups.items())
        # Each strategy's state per symbol, to tell it what its account really holds.
        self._states: dict[str, dict[str, StrategyState]] = {}
        for _, runner in self._runners:
            for (name, symbol), state in runner.states.items():
                self._states.setdefault(name, {})[symbol] = state
        # Strategies reading more than closed candles are also run between two candle closes.
        self._tick_runners = tuple((timeframe, runner) for timeframe, runner in self._runners
                                   if any(s.reads - {"candles"} for s in runner.strategies))
        needs = candle_needs(strategies, HISTORY_LENGTH)
        self._market = LiveMarket(settings.symbols, needs.timeframes, needs.capacity, HISTORY_LENGTH)
        view = _HotStateMarket(self._market, hot_state)
        self._view = view
        self._intake = decisions
        self._strong_signals = strong_signals
        self._gate = gate
        self._gate_store = gate_store
        self._gated = frozenset(settings.strategies.gated)
        self._llm_accounts: dict[str, StrategyAccount] = {}
        self._agent = (agent or TechnicalAgent()) if settings.strategies.technical_agent else None
        tested = set(settings.strategies.tested)
        self._base = StrategyAccount(settings.account, settings, store, view)
        self._by_strategy = {
            s.name: StrategyAccount(strategy_account_name(settings.account, s.name), settings, store, view,
                                    strategy=s.name, tested=s.name in tested)
            for s in strategies
        }
        self._accounts: tuple[StrategyAccount, ...] = (self._base, *self._by_strategy.values())
        self._last_snapshot_minute: int | None = None
        self._stream_id = start_stream_id
        # The public tape is read only when some strategy reads it (order flow), from the same
        # point as the candles: all of a replay, or only what is new to a live loop.
        reads_tape = any("trades" in s.reads for s in strategies)
        self._trades_id: str | None = ("0" if start_stream_id == "0" else "$") if reads_tape else None
        self._feed: HotStateFeed | None = None
        # Decision stream entries read before the market's time was known (see _cycle_on).
        self._unjudged: list[tuple[bytes, Mapping[bytes, bytes]]] = []
        self.stats = ExecutorStats(accounts={a.name: a.stats for a in self._accounts})

    @property
    def portfolio(self) -> Portfolio:
        """The base account's portfolio (the TechnicalAgent's)."""
        return self._base.portfolio

    @property
    def positions(self) -> PositionTracker:
        """The base account's positions."""
        return self._base.positions

    @property
    def orders(self) -> OrderManager:
        """The base account's orders."""
        return self._base.orders

    @property
    def market(self) -> LiveMarket:
        """The loop's view of the market: its candle history, prices and books."""
        return self._market

    @property
    def strategies(self) -> tuple[LoadedStrategy, ...]:
        """The strategies the loop runs, each on its own account."""
        return self._strategies

    def strategy_state(self, strategy: str, symbol: str) -> StrategyState:
        """What ``strategy`` remembers about ``symbol`` (KeyError for a strategy the loop does not run)."""
        return self._states[strategy][symbol]

    @property
    def strategy_failures(self) -> dict[str, int]:
        """How often each strategy raised (or returned garbage) since the start; it ran on regardless."""
        return {name: count for _, runner in self._runners for name, count in runner.failure_counts.items()}

    @property
    def accounts(self) -> tuple[StrategyAccount, ...]:
        """Every account the loop trades: the base account first, then one per strategy, then
        the LLM accounts in the order their first decision arrived."""
        return self._accounts

    @property
    def market_time_us(self) -> int | None:
        """The close of the newest candle the loop has processed (None before the first)."""
        return self._market.candle_time_us

    @property
    def intake(self) -> DecisionIntake | None:
        """Where the loop reads deliberated decisions from, if anywhere."""
        return self._intake

    def account(self, name: str) -> StrategyAccount:
        """The account called ``name``; KeyError when the loop has none."""
        for account in self._accounts:
            if account.name == name:
                return account
        raise KeyError(f"no account named {name!r}")

    async def run(self, stop: asyncio.Event, drain_before_stop: bool = True) -> ExecutorStats:
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
        await asyncio.to_thread(self.record_snapshot)
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
                                                higher=self._market.timeframes[1:])
        self._stream_id = recent.last_id
        taken = self._market.seed(recent.candles, recent.higher)
        now_us = self._market.candle_time_us
        if now_us is not None:
            # As a loop that had seen the whole stream: it decided on these candles already.
            for timeframe, runner in self._runners:
                runner.prime(self._market.snapshot(now_us, timeframe, candles="candles" in runner.reads))
        self.stats.warm_candles += taken
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
        extra = {DECISIONS_STREAM: self._intake.last_id} if self._intake is not None else None
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
        reads_decisions = intake is not None and self._market.now_us() is not None
        extra = {DECISIONS_STREAM: intake.last_id} if intake is not None and reads_decisions else None
        return self._hot_state.poll(self._stream_id, self._settings.symbols, trades_after=self._trades_id,
                                    extra_streams=extra)

    def _cycle_on(self, started: float, polled: CyclePoll) -> int:
        """The cycle's work on what it read; returns the number of closed candles processed."""
        self._stream_id, self._trades_id = polled.last_id, polled.trades_id
        candles, prices = polled.candles, polled.prices
        self._market.set_books(polled.books)
        if polled.trades:
            self._market.add_trades(polled.trades)
        deciding = 0.0
        if candles:
            # A candle cycle writes a trail (snapshots, signals, checks, orders, fills): all of it
            # goes to the store in one round trip. A tick cycle seldom writes, so it syncs nothing.
            with self._store.pipeline():
                for moment in _moments(candles):
                    deciding += self._on_moment(moment)
        else:
            deciding += self._on_ticks(prices)
        if self._gate is not None:
            self._on_gate_decisions(self._gate)
        if self._intake is not None:
            # A feed reads decisions from the start; one read before the market's time is known
            # waits for it (its expiry could not be judged).
            self._unjudged += polled.extra.get(DECISIONS_STREAM, [])
            if self._market.now_us() is not None:
                entries, self._unjudged = self._unjudged, []
                self._on_decisions(self._intake, entries)
        self.stats.cycles += 1
        self.stats.cycle_ms.append((time.perf_counter() - started) * 1000)
        self.stats.decision_ms.append(deciding * 1000)
        return len(candles)

    def _on_moment(self, candles: Sequence[Candle]) -> float:
        """Candles closing at the same time: exits, then decisions. Returns the deciding seconds."""
        fresh = [candle for candle in candles if self._market.add_candle(candle)]
        if not fresh:
            return 0.0  # not ours, or already seen (a replayed stream entry)
        self.stats.candles += len(fresh)
        for candle in fresh:
            when = us_to_datetime(candle.close_time_us)
            for account in self._accounts:
                account.manage_exits(candle.symbol, candle.low, candle.high, candle.close, when)
        now, now_us = self._market.market_time, self._market.candle_time_us
        assert now is not None and now_us is not None
        for account in self._accounts[1:]:
            account.observe_equity(now)
        # As before the strategies came: the TechnicalAgent decides only once its account has a value.
        base_valued = self._base.observe_equity(now)
        started = time.perf_counter()
        technical = []
        if self._agent is not None and base_valued:
            # The agent reads the last HISTORY_LENGTH candles from the 1m window the strategies
            # share (its ring holds at least as many: candle_needs's minimum capacity).
            technical = [s for c in fresh if (w := self._market.recent(c.symbol, HISTORY_LENGTH)) is not None
                         and (s := self._agent.analyze_window(w))]
        signals = self._decide(self._runners, now_us)
        deciding = time.perf_counter() - started
        for signal in technical:
            self._base.on_signal(signal)
        self._route(signals, now_us)
        self._sync_holdings(self._by_strategy)
        self._publish_strong([*technical, *signals])
        self._maybe_snapshot(now_us)
        return deciding

    def _publish_strong(self, signals: Sequence[TechnicalSignal | StrategySignal]) -> None:
        """Announce the strong entries of this moment, so the models may be asked early."""
        if self._strong_signals is None:
            return
        threshold = self._settings.deliberation.strong_signal_strength
        for signal in signals:
            direction = signal.direction
            if direction is None or signal.strength < threshold:
                continue
            ts_us = datetime_to_us(signal.time)
            self._strong_signals.publish(StrongSignal(
                signal_id=signal.signal_id, strategy=signal.strategy, symbol=signal.symbol,
                direction=Direction(direction), strength=signal.strength, ts_us=ts_us))

    def _llm_account(self, name: str) -> StrategyAccount | None:
        """The LLM account ``name``, opened on its first decision; None for a non-LLM name."""
        if not name.startswith(LLM_ACCOUNT_PREFIX):
            return None
        account = self._llm_accounts.get(name)
        if account is None:
            account = StrategyAccount(name, self._settings, self._store, self._view, strategy=name)
            self._llm_accounts[name] = account
            self._accounts = (*self._accounts, account)
            self.stats.accounts[name] = account.stats
            log.info("account %s opened for its first decision", name)
        return account

    def _on_decisions(self, intake: DecisionIntake, entries: Sequence[tuple[bytes, Mapping[bytes, bytes]]]) -> None:
        """Risk-check and trade the fresh decisions, each on its own account; follow their positions."""
        now_us = self._market.now_us()
        assert now_us is not None  # decisions are only read once the market's time is known
        now = us_to_datetime(now_us)
        for decision in intake.poll(now_us, entries):
            self._trade_decision(intake, decision, now)
        if self._llm_accounts:
            open_ids = {p.position_id for a in self._llm_accounts.values() for p in a.positions.open_positions()}
            intake.track_closes(open_ids, now)

    def _trade_decision(self, intake: DecisionIntake, decision: PublishedDecision, now: datetime) -> None:
        account = self._llm_account(decision.account)
        if account is None:
            # Decisions trade LLM accounts only: never the base or a strategy's account.
            intake.refuse(decision, f"{decision.account} is not an LLM account", now)
            return
        account.observe_equity(now)
        intent = decision.intent()
        check = account.on_intent(intent)
        open_ids = {p.position_id for p in account.positions.open_positions()}
        intake.record_outcome(decision, check, f"{account.name}:{intent.intent_id}", open_ids, now)

    def _decide(self, runners: Sequence[tuple[str | None, StrategyRunner]], ts_us: int) -> list[StrategySignal]:
        """The new signals of ``runners`` on the market as of ``ts_us``."""
        signals: list[StrategySignal] = []
        for timeframe, runner in runners:
            signals += runner.run(self._market.snapshot(ts_us, timeframe, candles="candles" in runner.reads))
        return signals

    def _on_ticks(self, prices: Mapping[str, LastPrice]) -> float:
        """Exits against the latest trade prices, then the strategies that read more than candles."""
        if self._market.candle_time_us is None:
            return 0.0
        # Most accounts hold nothing most of the time: only those holding a position watch ticks.
        holding = {account: count for account in self._accounts if (count := account.positions.open_count)}
        for symbol, last in prices.items():
            if not self._market.observe_tick(last) or not holding:
                continue  # older than what the candles already told us, or nothing to watch
            when = us_to_datetime(last.ts_us)
            for account in holding:
                account.manage_exits(symbol, last.price, last.price, last.price, when)
        # A strategy whose position an exit just closed is told so; the others hold what they held.
        closed = [account.strategy for account, count in holding.items()
                  if account.positions.open_count < count and account.strategy in self._by_strategy]
        if closed:
            self._sync_holdings(closed)
        if not self._tick_runners:
            return 0.0
        now_us = self._market.now_us()
        assert now_us is not None
        started = time.perf_counter()
        signals = self._decide(self._tick_runners, now_us)
        deciding = time.perf_counter() - started
        self._route(signals, now_us)
        if signals:
            self._sync_holdings(signal.strategy for signal in signals)
        return deciding

    def _route(self, signals: Sequence[StrategySignal], now_us: int) -> None:
        """Each signal to its strategy's account, through the confirmation gate when it is gated."""
        for signal in signals:
            if self._gate is not None and signal.strategy in self._gated:
                self._gate.submit(signal, self._market.snapshot(now_us))
            else:
                self._by_strategy[signal.strategy].on_signal(signal)

    def _on_gate_decisions(self, gate: GateQueue) -> None:
        """Trade the gated signals the gate let through; store every verdict and its reasons."""
        decided = gate.collect()
        if not decided:
            return
        if self._gate_store is not None:
            self._gate_store.record(decided)
        for decision in decided:
            if decision.final_signal is not None:
                self._by_strategy[decision.strategy].on_signal(decision.final_signal)
            else:
                log.info("gated signal %s held back: %s (%s)", decision.signal_id, decision.outcome.value,
                         decision.gate_reason)
        self._sync_holdings(decision.strategy for decision in decided)

    def _sync_holdings(self, strategies: Iterable[str]) -> None:
        """Tell each of ``strategies`` what its account really holds on each symbol.

        A strategy's state notes the entries it signalled; its account knows what came of them
        (the risk rules may have rejected one, a stop or exit may have closed it since). A gated
        strategy with a signal still at the gate is left as it is until the verdict.
        """
        awaiting = self._gate.awaiting() if self._gate is not None else set()
        for name in set(strategies) - awaiting:
            states, positions = self._states[name], self._by_strategy[name].positions
            for symbol, state in states.items():
                position = positions.open_for(symbol)
                action = None if position is None else SignalAction(position.direction.value)
                if action is not state.open_action:
                    state.hold(action, None if position is None else position.entry_price)

    def on_intent(self, intent: TradeIntent) -> RiskCheck:
        """Risk-check ``intent`` on the base account and, when approved, trade it."""
        return self._base.on_intent(intent)

    def market_risk(self) -> MarketRisk:
        """Volatility and correlations estimated from the candle history the loop holds."""
        return self._market.market_risk()

    def _maybe_snapshot(self, close_time_us: int) -> None:
        minute = close_time_us // 60_000_000
        if minute != self._last_snapshot_minute:
            self._last_snapshot_minute = minute
            self.record_snapshot()

    def record_snapshot(self) -> None:
        """Persist every account's holdings and value at the current market time, in one batch."""
        now = self._market.market_time
        if now is None:
            return
        snapshots = [s for account in self._accounts if (s := account.snapshot(now)) is not None]
        self._store.record_snapshots(snapshots)


def settle_heap() -> None:
    """Collect once, then exempt everything alive from later collections (``gc.freeze``).

    Called once the loop is set up and warm: the imported modules, the configuration and the
    candle history are what the heap mostly holds, and a full collection walking them all
    stalls a cycle for tens of milliseconds. Frozen, they are never walked again; what the
    loop allocates later is collected as usual.
    """
    gc.collect()
    gc.freeze()


def _moments(candles: Sequence[Candle]) -> Iterator[list[Candle]]:
    """Consecutive runs of candles with the same close time, in stream order."""
    run: list[Candle] = []
    for candle in candles:
        if run and candle.close_time_us != run[0].close_time_us:
            yield run
            run = []
        run.append(candle)
    if run:
        yield run


def percentiles(samples: Iterable[float]) -> Mapping[str, float]:
    """p50 and p99 of ``samples`` (0 for none)."""
    ordered = sorted(samples)
    if not ordered:
        return {"p50": 0.0, "p99": 0.0}
    return {
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }
