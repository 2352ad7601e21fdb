"""The trading kernel: market events in, every account's risk-checked orders out, all audited.

The kernel is the synchronous decision path of the platform, whatever hosts it (the live
executor's 100 ms grid over Redis, a loop over stored candles, a Dagster asset). Its host hands
it market events in market order:

- closed 1m candles (:meth:`TradingKernel.on_candles`): moment by moment (the candles closing
  at the same time together) they feed its :class:`~triplegain_core.marketdata.live_market.LiveMarket`
  (which also builds the higher timeframes the strategies read); the exits of every account's
  open positions are enforced against each candle's range (stop, trailing stop, invalidation,
  take-profit, maximum holding time) and the trailing stops moved, then the deciders run on that
  moment: the TechnicalAgent and every enabled strategy (a
  :class:`~triplegain_core.strategies.runner.StrategyRunner` over one
  :class:`~triplegain_core.marketdata.snapshot.MarketSnapshot`);
- the latest trade prices (:meth:`TradingKernel.on_ticks`): exits against them, then the
  strategies that read more than candles (books, time) on the latest snapshot;
- the latest books (:meth:`TradingKernel.on_books`) and public trades (:meth:`TradingKernel.on_trades`);
- deliberated decisions (:meth:`TradingKernel.on_decisions`) and the confirmation gate's
  verdicts (:meth:`TradingKernel.on_gate_verdicts`).

Each decider trades its own isolated :class:`~triplegain_core.execution.account.StrategyAccount`:
the TechnicalAgent the base account (``Settings.account``), each strategy ``<account>:<strategy>``,
each deliberated decision its LLM account (``llm:<model>``, ``llm:consensus``, ...) opened on its
first decision with the configured starting balances. A signal at least as strong as
``deliberation.strong_signal_strength`` is announced to the strong-signal sink; the signals of
gated strategies go to the confirmation gate and are traded only on its verdict.

The kernel reaches the world through small protocols only: an :class:`AuditSink` for the trail,
a :class:`BookSource` for the book an order fills against, and optionally a
:class:`StrongSignalSink`, a :class:`DecisionLifecycle`, a :class:`GatedSignalQueue` and a
:class:`GateAudit`. Market time (candle and trade timestamps), not the wall clock, stamps every
record, so a replay gives the same trail as the live run.

The market guards (:attr:`TradingKernel.guards`, see :mod:`~triplegain_core.risk.guards`) refuse
every account's entries through :attr:`TradingKernel.entry_blocks` while they hold: the volatility
halt judges each candle close itself; the host hands the stale-market guard the market times it
read (:meth:`TradingKernel.observe_market`) and calls :meth:`TradingKernel.check_guards` once a
cycle, on the clock it runs on, and reports its failed reads and writes to the failure breaker
(:meth:`TradingKernel.record_failure`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from triplegain_core.analysis.indicators import MIN_HISTORY
from triplegain_core.analysis.technical_agent import TechnicalAgent
from triplegain_core.config import Settings
from triplegain_core.decisions.gate import GateDecision
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.decisions.published import LLM_ACCOUNT_PREFIX, PublishedDecision, StrongSignal
from triplegain_core.execution.account import AccountState, AccountStats, StrategyAccount, strategy_account_name
from triplegain_core.execution.audit import AuditSink
from triplegain_core.execution.order_manager import OrderManager
from triplegain_core.marketdata.live_market import LiveMarket
from triplegain_core.marketdata.snapshot import BookTop, MarketSnapshot
from triplegain_core.model.market import (
    TIMEFRAME_US,
    US_PER_MINUTE,
    Candle,
    Trade,
    datetime_to_us,
    us_to_datetime,
)
from triplegain_core.model.quotes import BookSnapshot, LastPrice
from triplegain_core.model.signals import Direction, Signal, SignalAction, TradeIntent
from triplegain_core.portfolio.balances import Portfolio
from triplegain_core.portfolio.positions import PositionTracker
from triplegain_core.risk.entry_blocks import EntryBlock, EntryBlocks
from triplegain_core.risk.guards import BreakerFailure, GuardState, MarketClock, MarketGuards
from triplegain_core.risk.rules import MarketRiskEstimate, RiskCheck, RiskReason
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.registry import LoadedStrategy, LoadReport
from triplegain_core.strategies.runner import StrategyRunner
from triplegain_core.strategies.selection import candle_needs, select_strategies, timeframe_of

log = logging.getLogger(__name__)

_CANDLES_ONLY = frozenset({"candles"})
HISTORY_LENGTH = max(MIN_HISTORY * 3, 300)
CYCLE_SAMPLES = 10_000
# For batches spanning at least this much market time (a backtest, a catch-up), the market
# builds each series once for the batch (LiveMarket.expect) and the strategies are asked where
# they may signal (SIGNAL_CANDIDATES): for a live cycle's moment or two, neither pays.
BATCH_MIN_SPAN_US = 30 * US_PER_MINUTE


class BookSource(Protocol):
    """Where an order finds the book it fills against."""

    def book(self, symbol: str, when: datetime) -> BookTop | None:
        """The book of ``symbol`` to fill an order of ``when`` against, or None (fixed slippage)."""
        ...


class StrongSignalSink(Protocol):
    """Where strong entries are announced, so the models may be asked early."""

    def publish(self, item: StrongSignal, /) -> object:
        """Announce one strong signal."""
        ...


class DecisionLifecycle(Protocol):
    """The lifecycle side of the decision intake: what became of each decision is written back."""

    def refuse(self, decision: PublishedDecision, reason: str, at: datetime) -> None:
        """Refuse a decision the kernel cannot route."""
        ...

    def record_outcome(self, decision: PublishedDecision, check: RiskCheck, position_id: str,
                       open_positions: Collection[str], at: datetime) -> DecisionState:
        """Write what the risk check and the order made of ``decision``."""
        ...

    def track_closes(self, open_positions: Collection[str], at: datetime) -> list[str]:
        """Close the lifecycle of every watched position no longer open."""
        ...


class GatedSignalQueue(Protocol):
    """The confirmation gate the signals of gated strategies wait at, off the decision path."""

    def submit(self, signal: Signal, snapshot: MarketSnapshot) -> None:
        """Start reviewing ``signal``; returns at once."""
        ...

    def awaiting(self) -> set[str]:
        """The strategies with a signal still waiting for its verdict."""
        ...


class GateAudit(Protocol):
    """Where the gate's verdicts are kept."""

    def record(self, decisions: Sequence[GateDecision]) -> None:
        """Keep ``decisions`` with their reasons."""
        ...


@dataclass
class KernelStats:
    """Counters of one run; signals, approvals, rejections and fills summed over accounts.

    ``cycles`` and ``cycle_ms`` are the host's (one per pass of its loop)."""

    cycles: int = 0
    candles: int = 0
    # Closed candles taken at start as history only, not traded (a warm start).
    warm_candles: int = 0
    accounts: dict[str, AccountStats] = field(default_factory=dict)
    # The latest cycle times only: a service runs for months and must not grow with them.
    cycle_ms: deque[float] = field(default_factory=lambda: deque(maxlen=CYCLE_SAMPLES))
    # The deciding part of each cycle: snapshot, TechnicalAgent and strategies (no I/O).
    decision_ms: deque[float] = field(default_factory=lambda: deque(maxlen=CYCLE_SAMPLES))
    # The market guards (see triplegain_core.risk.guards): the market's age at the last check
    # (None: not judged yet), the entry blocks in force, the guard events so far.
    market_age_s: float | None = None
    blocked: tuple[str, ...] = ()
    guard_events: int = 0

    @property
    def signals(self) -> int:
        """Signals over every account."""
        return sum(a.signals for a in self.accounts.values())

    @property
    def approved(self) -> int:
        """Approved risk checks over every account."""
        return sum(a.approved for a in self.accounts.values())

    @property
    def rejected(self) -> int:
        """Rejected risk checks over every account."""
        return sum(a.rejected for a in self.accounts.values())

    @property
    def fills(self) -> int:
        """Fills over every account."""
        return sum(a.fills for a in self.accounts.values())

    def __str__(self) -> str:
        p, d = percentiles(self.cycle_ms), percentiles(self.decision_ms)
        return (f"cycles={self.cycles} candles={self.candles} accounts={len(self.accounts)} "
                f"signals={self.signals} approved={self.approved} rejected={self.rejected} fills={self.fills} "
                f"cycle_p50_ms={p['p50']:.3f} cycle_p99_ms={p['p99']:.3f} decision_p99_ms={d['p99']:.3f} "
                f"market_age_s={'-' if self.market_age_s is None else f'{self.market_age_s:.1f}'} "
                f"blocks={','.join(self.blocked) or '-'} guard_events={self.guard_events}")


class KernelState(BaseModel):
    """A checkpoint of the kernel: its accounts (all of them, or those changed since the
    previous export), the minute of its latest portfolio snapshot, the entry blocks in force
    (each with the moment it was set) and its guards' state."""

    model_config = ConfigDict(frozen=True)

    accounts: tuple[AccountState, ...] = ()
    last_snapshot_minute: int | None = None
    blocks: tuple[EntryBlock, ...] = ()
    guards: GuardState = GuardState()


@dataclass(frozen=True, slots=True)
class _LateSight:
    """A symbol's first price seen after the host could not read the market since ``blind_from_us``."""

    blind_from_us: int
    price: LastPrice


class _SharedMarket:
    """The market every account trades in: the kernel's prices and estimates, and the book an
    order fills against from the kernel's book source."""

    def __init__(self, market: LiveMarket, books: BookSource, blocks: EntryBlocks) -> None:
        self._market = market
        self._books = books
        self._blocks = blocks

    @property
    def prices(self) -> Mapping[str, float]:
        return self._market.prices

    @property
    def prices_version(self) -> int:
        return self._market.prices_version

    def market_risk(self) -> MarketRiskEstimate:
        return self._market.market_risk()

    def now_us(self) -> int | None:
        return self._market.now_us()

    def book(self, symbol: str, when: datetime) -> BookTop | None:
        return self._books.book(symbol, when)

    @property
    def entry_blocks(self) -> tuple[RiskReason, ...]:
        return self._blocks.reasons


class TradingKernel:
    """Runs the TechnicalAgent, the enabled strategies and the deliberated decisions, each on
    its own paper account, on the market events its host hands it.

    ``strategies`` defaults to those the configuration enables (``Settings.strategies``),
    discovered and validated; what was left out, and why, is in :attr:`strategy_reports`.
    ``books`` is where an order finds its book (default: the books the kernel was handed).
    ``clock`` is the clock its host runs on, which the market guards judge the market's age
    and count failures on (default: a replay's market clock; see :mod:`~triplegain_core.risk.guards`).
    """

    def __init__(
        self,
        settings: Settings,
        audit: AuditSink,
        *,
        agent: TechnicalAgent | None = None,
        strategies: Iterable[LoadedStrategy] | None = None,
        books: BookSource | None = None,
        decisions: DecisionLifecycle | None = None,
        strong_signals: StrongSignalSink | None = None,
        gate: GatedSignalQueue | None = None,
        gate_audit: GateAudit | None = None,
        clock: MarketClock | None = None,
    ) -> None:
        self._settings = settings
        self._audit = audit
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
        # The strategies with SIGNAL_CANDIDATES, and the timeframe each reads.
        self._candidate_timeframes = {s.name: timeframe for s in strategies
                                      if s.candidates is not None and (timeframe := timeframe_of(s)) is not None}
        self._candidates = tuple(s for s in strategies if s.name in self._candidate_timeframes)
        # Per batch of candles (see on_candles): where each of those cannot signal, and per
        # symbol where the TechnicalAgent cannot.
        self._asleep: list[_AsleepSeries] = []
        self._agent_asleep: dict[str, set[int]] = {}
        # Each strategy's state per symbol, to tell it what its account really holds.
        self._states: dict[str, dict[str, StrategyState]] = {}
        for _, runner in self._runners:
            for (name, symbol), state in runner.states.items():
                self._states.setdefault(name, {})[symbol] = state
        # Strategies reading more than closed candles are also run between two candle closes.
        self._tick_runners = tuple((timeframe, runner) for timeframe, runner in self._runners
                                   if any(s.reads - {"candles"} for s in runner.strategies))
        needs = candle_needs(strategies, HISTORY_LENGTH)
        # 1m candles per symbol that fill every timeframe's window (what a restore warms with).
        self.history_minutes = max(needs.capacity * TIMEFRAME_US[tf] // US_PER_MINUTE for tf in needs.timeframes)
        self._market = LiveMarket(settings.symbols, needs.timeframes, needs.capacity, HISTORY_LENGTH)
        self.entry_blocks = EntryBlocks()
        """The blocks refusing every account's new entries (halt, stale market, breakers)."""
        self.guards = MarketGuards(settings.guards, settings.symbols, self.entry_blocks, audit, clock)
        """The stale-market guard, the volatility halt and the failure breaker over those blocks."""
        self._venue_rejections = 0
        view = _SharedMarket(self._market, self._market if books is None else books, self.entry_blocks)
        self._view = view
        self._decisions = decisions
        self._strong_signals = strong_signals
        self._gate = gate
        self._gate_audit = gate_audit
        self._gated = frozenset(settings.strategies.gated)
        self._llm_accounts: dict[str, StrategyAccount] = {}
        self._agent = (agent or TechnicalAgent()) if settings.strategies.technical_agent else None
        tested = set(settings.strategies.tested)
        self._base = StrategyAccount(settings.account, settings, audit, view, source="technical")
        self._by_strategy = {
            s.name: StrategyAccount(strategy_account_name(settings.account, s.name), settings, audit, view,
                                    strategy=s.name, tested=s.name in tested)
            for s in strategies
        }
        self._accounts: tuple[StrategyAccount, ...] = (self._base, *self._by_strategy.values())
        self._last_snapshot_minute: int | None = None
        # Per strategy, its account's position changes and its signals at the last holdings sync.
        self._synced: dict[str, tuple[int, int]] = {}
        # Changes made to the strategies' states outside their runners (holdings, a restore),
        # and per candle runner what it last ran on (its timeframe's candles, those changes).
        self._states_version = 0
        self._runner_seen: dict[StrategyRunner, tuple[int, int]] = {}
        # The accounts changed since the last export_state (every account after a candle).
        self._changed: set[str] = set()
        self._all_changed = False
        # The symbols the host has not seen since it could not read the market, each with the
        # market time sight was lost at; then each one's first price seen after, which the exits
        # of its candles that closed meanwhile fill at (see lose_sight).
        self._unseen: dict[str, int] = {}
        self._sight: dict[str, _LateSight] = {}
        self.reads_trades = any("trades" in s.reads for s in strategies)
        """Whether some strategy reads the public tape (a host need not feed trades otherwise)."""
        self.stats = KernelStats(accounts={a.name: a.stats for a in self._accounts})
        self._noted_blocks: tuple[RiskReason, ...] = ()

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
        """The kernel's view of the market: its candle history, prices and books."""
        return self._market

    @property
    def strategies(self) -> tuple[LoadedStrategy, ...]:
        """The strategies the kernel runs, each on its own account."""
        return self._strategies

    def strategy_state(self, strategy: str, symbol: str) -> StrategyState:
        """What ``strategy`` remembers about ``symbol`` (KeyError for a strategy the kernel does not run)."""
        return self._states[strategy][symbol]

    @property
    def strategy_failures(self) -> dict[str, int]:
        """How often each strategy raised (or returned garbage) since the start; it ran on regardless."""
        return {name: count for _, runner in self._runners for name, count in runner.failure_counts.items()}

    @property
    def accounts(self) -> tuple[StrategyAccount, ...]:
        """Every account the kernel trades: the base account first, then one per strategy, then
        the LLM accounts in the order their first decision arrived."""
        return self._accounts

    @property
    def market_time_us(self) -> int | None:
        """The close of the newest candle the kernel has processed (None before the first)."""
        return self._market.candle_time_us

    def now_us(self) -> int | None:
        """The latest moment the kernel knows of: the newest candle close or trade (None before
        the first candle). Decisions are judged for expiry on it."""
        return self._market.now_us()

    def account(self, name: str) -> StrategyAccount:
        """The account called ``name``; KeyError when the kernel has none."""
        for account in self._accounts:
            if account.name == name:
                return account
        raise KeyError(f"no account named {name!r}")

    def warm(self, history: Mapping[str, Sequence[Candle]],
             higher: Mapping[tuple[str, str], Iterable[Candle]] | None = None) -> int:
        """Fill the market history with candles closed before the start (see
        :meth:`LiveMarket.seed`) without deciding on any; returns how many were taken.

        The strategies are primed on them as a kernel that had seen them all would have been,
        so the next new candle is decided on a full history."""
        taken = self._market.seed(history, higher)
        now_us = self._market.candle_time_us
        for candles in history.values():
            self.guards.volatility.add(candles)
        if now_us is not None:
            self.guards.check_volatility(now_us)
            for timeframe, runner in self._runners:
                runner.prime(self._market.snapshot(now_us, timeframe, candles="candles" in runner.reads))
        self.stats.warm_candles += taken
        return taken

    def on_books(self, books: Mapping[str, BookSnapshot]) -> None:
        """The latest published books replace the known ones."""
        self._market.set_books(books)

    def on_trades(self, trades: Sequence[Trade]) -> None:
        """The next public trades, in stream order, for the strategies that read the tape."""
        if trades:
            self._market.add_trades(trades)

    def on_candles(self, candles: Sequence[Candle]) -> None:
        """Closed candles in stream order, decided moment by moment; their whole trail is
        written in one audit pipeline. For a batch spanning at least ``BATCH_MIN_SPAN_US``, the
        market builds each series once for all of it (:meth:`LiveMarket.expect`) and the
        strategies with ``SIGNAL_CANDIDATES`` (and the TechnicalAgent) are asked once where they
        may signal, and called only there."""
        deciding = 0.0
        batch = bool(candles) and candles[-1].close_time_us - candles[0].close_time_us >= BATCH_MIN_SPAN_US
        try:
            if batch:
                self._market.expect(candles)
                self._asleep = self._asleep_rows()
            with self._audit.pipeline():
                for moment in _moments(candles):
                    deciding += self._on_moment(moment)
        finally:
            self._asleep, self._agent_asleep = [], {}
            self._market.settle()
        self.stats.decision_ms.append(deciding * 1000)

    def _asleep_rows(self) -> list[_AsleepSeries]:
        """For each strategy with ``SIGNAL_CANDIDATES`` and each of its symbols: the open times
        of the candles of its timeframe that the batch the market expects closes on which it
        cannot signal, by series (and the close times of its 1m candles on which the
        TechnicalAgent cannot)."""
        asleep: list[_AsleepSeries] = []
        self._agent_asleep = {}
        for symbol in self._settings.symbols:
            minutes = self._market.expected(symbol)
            if self._agent is not None and minutes is not None:
                series, first = minutes
                awake = self._agent.candidate_rows(series, first, HISTORY_LENGTH)
                self._agent_asleep[symbol] = set((series.open_time_us[first:][~awake] + US_PER_MINUTE).tolist())
            for timeframe in {self._candidate_timeframes[s.name] for s in self._candidates if symbol in s.symbols}:
                ahead = self._market.expected(symbol, timeframe)
                if ahead is None:
                    continue
                series, first = ahead
                opens = series.open_time_us[first:]
                pairs: list[tuple[tuple[str, str], list[int]]] = []
                for strategy in self._candidates:
                    if symbol not in strategy.symbols or self._candidate_timeframes[strategy.name] != timeframe:
                        continue
                    assert strategy.candidates is not None
                    try:
                        rows = np.asarray(strategy.candidates(series, first, strategy.config))
                        if rows.dtype != np.bool_ or rows.shape != opens.shape:
                            raise ValueError(f"returned {rows.dtype} {rows.shape}, not bool {opens.shape}")
                    except Exception as exc:  # a plugin: asked on every row instead
                        log.error("SIGNAL_CANDIDATES of %s failed on %s: %s", strategy.name, symbol, exc)
                        continue
                    pairs.append(((strategy.name, symbol), opens[~rows].tolist()))
                if pairs:
                    asleep.append(_AsleepSeries((symbol, timeframe), pairs))
        return asleep

    def on_ticks(self, prices: Mapping[str, LastPrice]) -> None:
        """Exits against the latest trade prices, then the strategies that read more than candles."""
        self.stats.decision_ms.append(self._on_ticks(prices) * 1000)

    def _on_moment(self, candles: Sequence[Candle]) -> float:
        """Candles closing at the same time: exits, then decisions. Returns the deciding seconds."""
        market = self._market
        fresh = [candle for candle in candles if market.add_candle(candle)]
        if not fresh:
            return 0.0  # not ours, or already seen (a replayed stream entry)
        self.stats.candles += len(fresh)
        self._all_changed = True
        now, now_us = market.market_time, market.candle_time_us
        assert now is not None and now_us is not None
        late = False
        # Only the accounts holding a position have exits to watch (the candles of a moment
        # close together: one time for all).
        holding = [account for account in self._accounts if account.positions.open_count]
        changes = [account.positions.changes for account in holding]
        if holding or self._sight:
            first_close = fresh[0].close_time_us
            when = now if first_close == now_us else us_to_datetime(first_close)
            for candle in fresh:
                seen_after = self._seen_after(candle) if self._sight else None
                late = late or seen_after is not None
                for account in holding:
                    account.manage_exits(candle.symbol, candle.low, candle.high, candle.close, when, candle.open,
                                         seen_after)
        if late:
            # The market's price is the one seen after, not these candles' old closes.
            for sight in self._sight.values():
                self._market.observe_tick(sight.price)
            # Decided on (the strategies keep their memory), but no entry at a moment long past.
            self.entry_blocks.set(RiskReason.MARKET_SEEN_LATE, now,
                                  "candles that closed while the market could not be seen")
        # The volatility halt judges on the closes of this moment, before anything decides on them.
        self.guards.volatility.add(fresh)
        self.guards.check_volatility(now_us)
        self._note_blocks()
        for account in self._accounts[1:]:
            account.observe_equity(now)
        # As before the strategies came: the TechnicalAgent decides only once its account has a value.
        base_valued = self._base.observe_equity(now)
        started = time.perf_counter()
        technical = []
        if self._agent is not None and base_valued:
            # The agent reads the last HISTORY_LENGTH candles from the 1m window the strategies
            # share (its ring holds at least as many: candle_needs's minimum capacity).
            asleep = self._agent_asleep
            technical = [s for c in fresh if not (asleep and c.close_time_us in asleep.get(c.symbol, ()))
                         and (w := self._market.recent(c.symbol, HISTORY_LENGTH)) is not None
                         and (s := self._agent.analyze_window(w))]
        signals = self._decide(self._runners, now_us)
        deciding = time.perf_counter() - started
        for signal in technical:
            self._base.on_signal(signal)
        self._route(signals, now_us)
        if late:
            self.entry_blocks.clear(RiskReason.MARKET_SEEN_LATE)
        # Only an exit or a signal of this moment changed what a strategy holds or signalled.
        touched = [signal.strategy for signal in signals]
        for account, before in zip(holding, changes, strict=True):
            if account.positions.changes != before and account.strategy in self._by_strategy:
                touched.append(account.strategy)
        if touched:
            self._sync_holdings(touched)
        if self._strong_signals is not None and (technical or signals):
            self._publish_strong([*technical, *signals])
        self._maybe_snapshot(now_us)
        return deciding

    @property
    def blind(self) -> bool:
        """Whether the host said it cannot read the market and has not seen every symbol since."""
        return bool(self._unseen)

    def lose_sight(self) -> None:
        """The host cannot read the market (its hot state is out of reach).

        Nothing new arrives meanwhile, so nothing is decided; the candles that close meanwhile
        arrive once it reads again. An exit they reached could not be acted on when it happened:
        it fills at the first price seen after (:meth:`regain_sight`), recorded as such (the
        position's ``exit_crossed_at``), and no entry is placed on those candles. A restart is
        not this: restored accounts catch up on the stream as a run that never stopped would.
        """
        now_us = self._market.now_us() or 0
        for symbol in self._settings.symbols:
            self._unseen.setdefault(symbol, now_us)

    def regain_sight(self, prices: Mapping[str, LastPrice], candles: Sequence[Candle]) -> None:
        """A fresh read of the market by a host that lost sight of it: its ``prices`` and
        ``candles``. A symbol is seen again once a read brings something newer than the moment
        sight was lost: its first price seen after is then its trade price read, else the close
        of its newest candle read, and its candles closed since sight was lost and up to that
        price are seen late. Call before handing the kernel the read's candles.
        """
        seen = {c.symbol: LastPrice(c.symbol, c.close, c.close_time_us) for c in candles}
        seen.update(prices)
        for symbol, blind_from in list(self._unseen.items()):
            last = seen.get(symbol)
            if last is None or last.ts_us <= blind_from:
                continue
            del self._unseen[symbol]
            self._sight[symbol] = _LateSight(blind_from, last)
            log.warning("%s seen again: exits its candles reached since %s fill at the first price seen after,"
                        " %s at %s", symbol, us_to_datetime(blind_from).isoformat(), last.price,
                        us_to_datetime(last.ts_us).isoformat())

    def _seen_after(self, candle: Candle) -> LastPrice | None:
        """The first price seen after ``candle``, when it closed while the market could not be seen."""
        sight = self._sight.get(candle.symbol)
        if sight is None:
            return None
        if candle.close_time_us > sight.price.ts_us:
            del self._sight[candle.symbol]  # caught up: this one was seen in time
            return None
        return sight.price if candle.close_time_us > sight.blind_from_us else None

    def _publish_strong(self, signals: Sequence[Signal]) -> None:
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
            account = StrategyAccount(name, self._settings, self._audit, self._view, strategy=name)
            self._llm_accounts[name] = account
            self._accounts = (*self._accounts, account)
            self.stats.accounts[name] = account.stats
            log.info("account %s opened for its first decision", name)
        return account

    def on_decisions(self, decisions: Sequence[PublishedDecision]) -> None:
        """Risk-check and trade fresh decisions (already judged for expiry and confidence on
        :meth:`now_us`), each on its own LLM account; follow their positions.

        Needs the market's time (a first candle) and a :class:`DecisionLifecycle`."""
        lifecycle = self._decisions
        now_us = self._market.now_us()
        if lifecycle is None or now_us is None:
            raise RuntimeError("decisions need a lifecycle and the market's time (a first candle)")
        now = us_to_datetime(now_us)
        for decision in decisions:
            self._trade_decision(lifecycle, decision, now)
        if self._llm_accounts:
            open_ids = {p.position_id for a in self._llm_accounts.values() for p in a.positions.open_positions()}
            lifecycle.track_closes(open_ids, now)

    def _trade_decision(self, lifecycle: DecisionLifecycle, decision: PublishedDecision, now: datetime) -> None:
        account = self._llm_account(decision.account)
        if account is None:
            # Decisions trade LLM accounts only: never the base or a strategy's account.
            lifecycle.refuse(decision, f"{decision.account} is not an LLM account", now)
            return
        self._changed.add(account.name)
        account.observe_equity(now)
        intent = decision.intent()
        check = account.on_intent(intent)
        open_ids = {p.position_id for p in account.positions.open_positions()}
        lifecycle.record_outcome(decision, check, f"{account.name}:{intent.intent_id}", open_ids, now)

    def _decide(self, runners: Sequence[tuple[str | None, StrategyRunner]], ts_us: int) -> list[Signal]:
        """The new signals of ``runners`` on the market as of ``ts_us``."""
        signals: list[Signal] = []
        asleep = self._asleep_now()
        for timeframe, runner in runners:
            if asleep and runner.states.keys() <= asleep:
                continue  # not one of them can signal: no snapshot to cut
            if runner.reads == _CANDLES_ONLY:
                # No new candle of its timeframe and no state changed: the runner would skip every
                # call (its inputs are those it last saw).
                seen = (self._market.candles_version(timeframe), self._states_version)
                if self._runner_seen.get(runner) == seen:
                    continue
                self._runner_seen[runner] = seen
            signals += runner.run(self._market.snapshot(ts_us, timeframe, candles="candles" in runner.reads), asleep)
            if runner.last_report.signals or runner.last_report.gate_decisions:
                self._states_version += 1  # what it signalled is in its states: the next call may differ
        return signals

    def _asleep_now(self) -> set[tuple[str, str]]:
        """The (strategy, symbol) pairs whose newest candle (of their timeframe) is one they
        cannot signal on."""
        asleep: set[tuple[str, str]] = set()
        newest_opens = self._market.newest_opens
        for series in self._asleep:
            newest = newest_opens.get(series.key)
            if newest != series.newest_open_us:  # most series of a higher timeframe did not move
                series.newest_open_us = newest
                series.now = series.asleep_on.get(newest, ()) if newest is not None else ()
            asleep.update(series.now)
        return asleep

    def _on_ticks(self, prices: Mapping[str, LastPrice]) -> float:
        """Exits against the latest trade prices, then the strategies that read more than
        candles; returns the deciding seconds."""
        if self._market.candle_time_us is None:
            return 0.0
        # Most accounts hold nothing most of the time: only those holding a position watch ticks.
        holding = {account: count for account in self._accounts if (count := account.positions.open_count)}
        self._changed.update(account.name for account in holding)
        for symbol, last in prices.items():
            if not self._market.observe_tick(last) or not holding:
                continue  # older than what the candles already told us, or nothing to watch
            when = us_to_datetime(last.ts_us)
            for account in holding:
                account.manage_exits(symbol, last.price, last.price, last.price, when, last.price)
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

    def _route(self, signals: Sequence[Signal], now_us: int) -> None:
        """Each signal to its strategy's account, through the confirmation gate when it is gated."""
        for signal in signals:
            if self._gate is not None and signal.strategy in self._gated:
                self._gate.submit(signal, self._market.snapshot(now_us))
            else:
                self._by_strategy[signal.strategy].on_signal(signal)

    def on_gate_verdicts(self, decided: Sequence[GateDecision]) -> None:
        """Trade the gated signals the gate let through; keep every verdict and its reasons."""
        if not decided:
            return
        if self._gate_audit is not None:
            self._gate_audit.record(decided)
        for decision in decided:
            if decision.final_signal is not None:
                self._changed.add(self._by_strategy[decision.strategy].name)
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
            # Nothing opened or closed, nothing signalled since the last sync: nothing to tell.
            version = (positions.changes, sum(state.signals_emitted for state in states.values()))
            if self._synced.get(name) == version:
                continue
            self._synced[name] = version
            for symbol, state in states.items():
                position = positions.open_for(symbol)
                action = None if position is None else SignalAction(position.direction.value)
                if action is not state.open_action:
                    state.hold(action, None if position is None else position.entry_price)
                    self._states_version += 1

    def observe_market(self, market_us: int) -> None:
        """A source announced the market at ``market_us`` (market data the host read: a price's
        trade time, a candle close, the streamer heartbeat's last trade), for the stale-market guard."""
        self.guards.stale.observe(market_us)

    def observe_streamer(self, heartbeat_us: int | None, last_trade_us: int | None) -> None:
        """The streamer's heartbeat as the host read it (None: none): when it was written (wall
        clock) and the newest trade the streamer took, named when the stale-market guard fires."""
        self.guards.stale.observe_streamer(heartbeat_us, last_trade_us)

    def check_guards(self) -> bool:
        """Judge the market's age and the failure breaker now, on the host's clock; returns
        whether the market is stale (then no decision may trade). The orders the venue rejected
        since the last check count as failures. The host calls it once a cycle, after
        :meth:`observe_market` and before handing the kernel the cycle's events."""
        guards = self.guards
        market_us = self._market.now_us()
        if market_us is not None:
            guards.stale.observe(market_us)
        rejected = sum(account.stats.rejected_orders for account in self._accounts)
        if rejected > self._venue_rejections:
            guards.record_failure(BreakerFailure.VENUE_REJECTION, "orders rejected by the venue",
                                  rejected - self._venue_rejections)
            self._venue_rejections = rejected
        stale = guards.check_market()
        guards.check_failures()
        age_us = guards.stale.age_us
        self.stats.market_age_s = None if age_us is None else age_us / 1_000_000
        self._note_blocks()
        return stale

    def record_failure(self, kind: BreakerFailure, detail: str, count: int = 1) -> None:
        """Count ``count`` failed reads or writes of the host's for the failure breaker."""
        self.guards.record_failure(kind, detail, count)
        self._note_blocks()

    def _note_blocks(self) -> None:
        reasons = self.entry_blocks.reasons
        if reasons is not self._noted_blocks:  # a new tuple whenever a block is set or lifted
            self._noted_blocks = reasons
            self.stats.blocked = tuple(reason.value for reason in reasons)
        self.stats.guard_events = self.guards.events

    def on_intent(self, intent: TradeIntent) -> RiskCheck:
        """Risk-check ``intent`` on the base account and, when approved, trade it."""
        self._changed.add(self._base.name)
        return self._base.on_intent(intent)

    def market_risk(self) -> MarketRiskEstimate:
        """Volatility and correlations estimated from the candle history the kernel holds."""
        return self._market.market_risk()

    def halt(self, since: datetime, detail: str) -> bool:
        """Refuse every new entry of every account (exits go on) until :meth:`resume`; False
        when trading was already halted."""
        return self.entry_blocks.set(RiskReason.TRADING_HALTED, since, detail)

    def resume(self) -> bool:
        """Lift a halt; False when trading was not halted."""
        return self.entry_blocks.clear(RiskReason.TRADING_HALTED) is not None

    def cancel_working_orders(self, reason: str) -> int:
        """Cancel the working orders of every account at the market's time; how many."""
        now = self._market_now()
        if now is None:
            return 0
        cancelled = 0
        for account in self._accounts:
            if account.orders.open_orders():
                self._changed.add(account.name)
                cancelled += account.cancel_working_orders(now, reason)
        return cancelled

    def close_position(self, position_id: str) -> bool:
        """Close one open position, whichever account holds it, at the market through the exit
        path (see :meth:`StrategyAccount.close_by_hand`); False when no account holds it open
        (or the market's time or price is not known yet)."""
        now = self._market_now()
        if now is None:
            return False
        for account in self._accounts:
            if any(p.position_id == position_id for p in account.positions.open_positions()):
                self._changed.add(account.name)
                closed = account.close_by_hand(position_id, now)
                if account.strategy in self._by_strategy:
                    self._sync_holdings([account.strategy])
                return closed
        return False

    def flatten(self) -> list[str]:
        """Close every open position of every account at the market (as :meth:`close_position`);
        the ids of the positions closed."""
        ids = [p.position_id for account in self._accounts for p in account.positions.open_positions()]
        return [position_id for position_id in ids if self.close_position(position_id)]

    def _market_now(self) -> datetime | None:
        now_us = self._market.now_us()
        return None if now_us is None else us_to_datetime(now_us)

    def export_state(self, *, changed_only: bool = False) -> KernelState:
        """A checkpoint of every account (or, ``changed_only``, of those changed since the
        previous export) and of the snapshot minute; see :meth:`import_state`."""
        if changed_only and not self._all_changed:
            accounts = [account for account in self._accounts if account.name in self._changed]
        else:
            accounts = list(self._accounts)
        self._changed.clear()
        self._all_changed = False
        return KernelState(accounts=tuple(self._account_state(account) for account in accounts),
                           last_snapshot_minute=self._last_snapshot_minute, blocks=tuple(self.entry_blocks),
                           guards=self.guards.state())

    def _account_state(self, account: StrategyAccount) -> AccountState:
        state = account.export_state()
        strategy_states = self._states.get(account.strategy or "") if account is not self._base else None
        if not strategy_states:
            return state
        kept = tuple(dataclasses.replace(s, memory=dict(s.memory)) for s in strategy_states.values())
        return state.model_copy(update={"strategy_states": kept})

    def import_state(self, state: KernelState) -> list[str]:
        """Take a checkpoint (as :meth:`export_state` made it) in place of what the accounts
        hold: the LLM accounts it names are opened, each strategy is told what its account
        holds, the entry blocks are those it held (set when they were: a guard judging again
        finds its block set and records nothing new). Take it before :meth:`warm`. Returns the
        names of the accounts it held that the kernel no longer trades (their checkpoint is
        left alone)."""
        known = {account.name: account for account in self._accounts}
        unknown = []
        for saved in state.accounts:
            account = known.get(saved.name) or self._llm_account(saved.name)
            if account is None:
                log.warning("account %s is in the checkpoint but no longer traded: not restored", saved.name)
                unknown.append(saved.name)
                continue
            account.import_state(saved)
            states = self._states.get(account.strategy or "") if account is not self._base else None
            for remembered in saved.strategy_states if states else ():
                current = states.get(remembered.symbol) if states else None
                if current is not None:
                    current.open_action, current.open_entry = remembered.open_action, remembered.open_entry
                    current.last_signal_id = remembered.last_signal_id
                    current.signals_emitted = remembered.signals_emitted
                    current.memory = dict(remembered.memory)
        self._last_snapshot_minute = state.last_snapshot_minute
        for block in tuple(self.entry_blocks):
            self.entry_blocks.clear(block.reason)
        for block in state.blocks:
            self.entry_blocks.set(block.reason, block.since, block.detail)
        self.guards.restore(state.guards)
        self._synced.clear()  # the strategies' states were just replaced
        self._states_version += 1
        self._sync_holdings(self._by_strategy)
        return unknown

    def _maybe_snapshot(self, close_time_us: int) -> None:
        minute = close_time_us // 60_000_000
        if minute != self._last_snapshot_minute:
            self._last_snapshot_minute = minute
            self.record_snapshot()

    def record_snapshot(self) -> None:
        """Keep every account's holdings and value at the current market time, in one batch."""
        now = self._market.market_time
        if now is None:
            return
        prices = dict(self._market.prices)
        snapshots = [s for account in self._accounts if (s := account.snapshot(now, prices)) is not None]
        self._audit.record_snapshots(snapshots)


class _AsleepSeries:
    """The (strategy, symbol) pairs reading one series (``key``: symbol and timeframe) with
    ``SIGNAL_CANDIDATES``: by open time of a batch's candles, those that cannot signal on it;
    and those that cannot signal on the newest candle seen."""

    __slots__ = ("asleep_on", "key", "newest_open_us", "now")

    def __init__(self, key: tuple[str, str], pairs: list[tuple[tuple[str, str], list[int]]]) -> None:
        self.key = key
        self.asleep_on: dict[int, tuple[tuple[str, str], ...]]
        if len(pairs) == 1:  # the usual case, built at C speed
            self.asleep_on = dict.fromkeys(pairs[0][1], (pairs[0][0],))
        else:
            gathered: dict[int, list[tuple[str, str]]] = {}
            for pair, opens in pairs:
                for open_us in opens:
                    gathered.setdefault(open_us, []).append(pair)
            self.asleep_on = {open_us: tuple(asleep) for open_us, asleep in gathered.items()}
        self.newest_open_us: int | None = -1
        self.now: tuple[tuple[str, str], ...] = ()


def _moments(candles: Sequence[Candle]) -> Iterator[list[Candle]]:
    """Consecutive runs of candles with the same close time, in stream order."""
    run: list[Candle] = []
    closes_at = None
    for candle in candles:
        close_time_us = candle.close_time_us
        if close_time_us != closes_at:
            if run:
                yield run
            run, closes_at = [], close_time_us
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
