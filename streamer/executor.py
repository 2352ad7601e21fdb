"""The trading loop: hot state in, risk-checked paper orders out, every step persisted.

Each cycle (100 ms by default) it reads the closed candles the streamer published since the
last cycle, in order, and for each one: enforces stops and take-profits against the candle's
range, runs the TechnicalAgent, passes any signal through the RiskAgent, and executes the
approved orders on the paper executor. Once the backlog is drained it checks the open
positions against the latest trade prices. Market time (candle and trade timestamps), not
the wall clock, stamps every record, so a replay gives the same trail as the live run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from triplegain_core.config import Settings
from triplegain_core.hot_state import HotStateReader
from triplegain_core.indicators import MIN_HISTORY
from triplegain_core.market import INSTRUMENTS, Candle, Side, us_to_datetime
from triplegain_core.orders import Order, OrderPurpose
from triplegain_core.paper_executor import PaperExecutor
from triplegain_core.portfolio import InsufficientBalanceError, MissingPriceError, Portfolio
from triplegain_core.positions import Position, PositionTracker
from triplegain_core.risk import RiskAgent
from triplegain_core.signals import Direction, TechnicalSignal
from triplegain_core.storage.trading_store import TradingStore
from triplegain_core.technical_agent import TechnicalAgent

log = logging.getLogger(__name__)

HISTORY_LENGTH = max(MIN_HISTORY * 3, 300)
CYCLE_SAMPLES = 10_000


@dataclass
class ExecutorStats:
    """Counters of one executor run."""

    cycles: int = 0
    candles: int = 0
    signals: int = 0
    approved: int = 0
    rejected: int = 0
    fills: int = 0
    # The latest cycle times only: a service runs for months and must not grow with them.
    cycle_ms: deque[float] = field(default_factory=lambda: deque(maxlen=CYCLE_SAMPLES))

    def __str__(self) -> str:
        p = cycle_percentiles(self)
        return (f"cycles={self.cycles} candles={self.candles} signals={self.signals} "
                f"approved={self.approved} rejected={self.rejected} fills={self.fills} "
                f"cycle_p50_ms={p['p50']:.3f} cycle_p99_ms={p['p99']:.3f}")


class TradingLoop:
    """Runs the agents on new candles and manages open positions for one paper account."""

    def __init__(
        self,
        settings: Settings,
        hot_state: HotStateReader,
        store: TradingStore,
        *,
        agent: TechnicalAgent | None = None,
        start_stream_id: str = "$",
    ) -> None:
        self._settings = settings
        self._hot_state = hot_state
        self._store = store
        self._agent = agent or TechnicalAgent()
        self._risk = RiskAgent(settings.risk, fee_rate=settings.fee_rate, slippage=settings.slippage)
        self._paper = PaperExecutor(fee_rate=settings.fee_rate, slippage=settings.slippage)
        self._portfolio = Portfolio(settings.account, settings.starting_balances)
        self._positions = PositionTracker(settings.account)
        self._history: dict[str, deque[Candle]] = {
            symbol: deque(maxlen=HISTORY_LENGTH) for symbol in settings.symbols
        }
        self._prices: dict[str, float] = {}
        self._market_time: datetime | None = None
        self._last_snapshot_minute: int | None = None
        self._stream_id = start_stream_id
        self.stats = ExecutorStats()

    @property
    def portfolio(self) -> Portfolio:
        return self._portfolio

    async def run(self, stop: asyncio.Event, drain_before_stop: bool = True) -> ExecutorStats:
        """Cycle every ``loop_interval_s`` until ``stop`` is set, then drain what is left."""
        interval = self._settings.loop_interval_s
        next_tick = time.monotonic()
        while not stop.is_set():
            await asyncio.to_thread(self.cycle)
            # Schedule against a fixed grid so the loop does not drift with cycle time.
            next_tick += interval
            delay = next_tick - time.monotonic()
            if delay < 0:
                next_tick = time.monotonic()
                delay = 0
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
        if drain_before_stop:
            while await asyncio.to_thread(self.cycle):
                pass
        await asyncio.to_thread(self.record_snapshot)
        return self.stats

    def cycle(self) -> int:
        """One pass of the loop; returns the number of closed candles processed."""
        started = time.perf_counter()
        self._stream_id, candles = self._hot_state.closed_candles_after(self._stream_id)
        for candle in candles:
            self._on_closed_candle(candle)
        if not candles:
            self._check_exits_on_ticks()
        self.stats.cycles += 1
        self.stats.cycle_ms.append((time.perf_counter() - started) * 1000)
        return len(candles)

    def _on_closed_candle(self, candle: Candle) -> None:
        history = self._history.get(candle.symbol)
        if history is None or (history and candle.open_time_us <= history[-1].open_time_us):
            return  # not ours, or already seen (a replayed stream entry)
        history.append(candle)
        self.stats.candles += 1
        self._prices[candle.symbol] = candle.close
        self._market_time = us_to_datetime(candle.close_time_us)
        for position, purpose, level in self._positions.exits_triggered(
            candle.symbol, candle.low, candle.high
        ):
            self._exit(position, purpose, level, self._market_time)
        if not self._can_value():
            return
        self._risk.observe_equity(self._market_time, self._equity())
        signal = self._agent.analyze(candle.symbol, list(history))
        if signal is not None:
            self._on_signal(signal)
        self._maybe_snapshot(candle.close_time_us)

    def _on_signal(self, signal: TechnicalSignal) -> None:
        self.stats.signals += 1
        self._store.record_signal(signal)
        account = self._settings.account
        position_id = f"{account}:{signal.signal_id}"
        check = self._risk.validate(
            signal,
            self._portfolio,
            self._prices,
            self._positions.open_positions(),
            signal.time,
            check_id=f"{position_id}:entry-check",
        )
        self._store.record_risk_check(check)
        if not check.approved:
            self.stats.rejected += 1
            log.debug("signal %s rejected: %s", signal.signal_id, [r.value for r in check.reasons])
            return
        self.stats.approved += 1
        order = Order(
            order_id=f"{position_id}:entry",
            account=account,
            time=signal.time,
            symbol=signal.symbol,
            side=Side.BUY if signal.direction is Direction.LONG else Side.SELL,
            quantity=check.quantity,
            purpose=OrderPurpose.ENTRY,
            check_id=check.check_id,
            position_id=position_id,
        )
        try:
            fill = self._paper.execute(order, signal.entry, self._portfolio)
        except InsufficientBalanceError as exc:
            # The balances moved since the check (an exit on the same candle): no order goes out.
            log.warning("entry %s not executed: %s", order.order_id, exc)
            return
        self._store.record_order(order)
        self._store.record_fill(fill)
        self.stats.fills += 1
        position = Position(
            position_id=position_id,
            account=account,
            symbol=signal.symbol,
            direction=signal.direction,
            quantity=fill.quantity,
            entry_price=fill.price,
            stop_loss=signal.stop_loss,
            take_profit=signal.take_profit,
            opened_at=fill.time,
            entry_notional_usdt=self._to_usdt(signal.symbol, fill.notional),
            equity_at_entry_usdt=check.equity_usdt,
            fees=fill.fee,
        )
        self._positions.open(position)
        self._store.record_position(position, "opened")

    def _exit(self, position: Position, purpose: OrderPurpose, price: float, when: datetime) -> None:
        check = self._risk.validate_exit(
            position, when, check_id=f"{position.position_id}:exit-check", equity_usdt=self._equity()
        )
        self._store.record_risk_check(check)
        order = Order(
            order_id=f"{position.position_id}:{purpose.value}",
            account=position.account,
            time=when,
            symbol=position.symbol,
            side=Side.SELL if position.direction is Direction.LONG else Side.BUY,
            quantity=position.quantity,
            purpose=purpose,
            check_id=check.check_id,
            position_id=position.position_id,
        )
        try:
            fill = self._paper.execute(order, price, self._portfolio)
        except InsufficientBalanceError as exc:
            # A gap far past the stop of a short: the position stays open and is retried
            # on the next tick, rather than the loop dying with it.
            log.error("exit %s not executed, position stays open: %s", order.order_id, exc)
            return
        self._store.record_order(order)
        self._store.record_fill(fill)
        self.stats.fills += 1
        closed = self._positions.close(position.position_id, fill, purpose)
        self._store.record_position(closed, "closed")

    def _check_exits_on_ticks(self) -> None:
        if self._market_time is None:
            return
        for symbol, last in self._hot_state.last_prices(self._settings.symbols).items():
            when = us_to_datetime(last.ts_us)
            if when < self._market_time:
                continue  # older than what the candles already told us
            for position, purpose, _ in self._positions.exits_triggered(symbol, last.price, last.price):
                self._exit(position, purpose, last.price, when)

    def _maybe_snapshot(self, close_time_us: int) -> None:
        minute = close_time_us // 60_000_000
        if minute != self._last_snapshot_minute:
            self._last_snapshot_minute = minute
            self.record_snapshot()

    def record_snapshot(self) -> None:
        """Persist the portfolio's holdings and value at the current market time."""
        if self._market_time is None or not self._can_value():
            return
        self._store.record_snapshot(self._portfolio.snapshot(self._market_time, dict(self._prices)))

    def _can_value(self) -> bool:
        try:
            self._equity()
        except MissingPriceError:
            return False
        return True

    def _equity(self) -> float:
        return self._portfolio.equity_usdt(self._prices)

    def _to_usdt(self, symbol: str, quote_amount: float) -> float:
        return self._portfolio.to_usdt(INSTRUMENTS[symbol].quote, quote_amount, self._prices)


def cycle_percentiles(stats: ExecutorStats) -> Mapping[str, float]:
    """p50 and p99 of the cycle times in milliseconds."""
    ordered = sorted(stats.cycle_ms)
    if not ordered:
        return {"p50": 0.0, "p99": 0.0}
    return {
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }
