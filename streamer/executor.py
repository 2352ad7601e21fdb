"""The trading loop: hot state in, risk-checked paper orders out, every step persisted.

Each cycle (100 ms by default) it reads the closed candles the streamer published since the
last cycle, in order, and for each one: enforces the exits of the open positions against the
candle's range (stop, trailing stop, invalidation, take-profit, maximum holding time), moves
the trailing stops, runs the TechnicalAgent, passes any signal (as a TradeIntent) through the
RiskAgent, and works the approved orders through the OrderManager on the paper executor. Once
the backlog is drained it does the same exit checks against the latest trade prices. Market
time (candle and trade timestamps), not the wall clock, stamps every record, so a replay
gives the same trail as the live run.
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
from triplegain_core.market import INSTRUMENTS, Candle, Side, datetime_to_us, us_to_datetime
from triplegain_core.market_snapshot import BookLevel, BookTop
from triplegain_core.order_manager import OrderManager
from triplegain_core.orders import Fill, Order, OrderPurpose, OrderType, TimeInForce
from triplegain_core.paper_executor import PaperExecutor
from triplegain_core.portfolio import MissingPriceError, Portfolio
from triplegain_core.positions import Position, PositionTracker, holding_deadline
from triplegain_core.risk import MarketRisk, RiskAgent, RiskCheck, estimate_market_risk
from triplegain_core.signals import Direction, IntentAction, TechnicalSignal, TradeIntent
from triplegain_core.storage.trading_store import TradingStore
from triplegain_core.technical_agent import TechnicalAgent

log = logging.getLogger(__name__)

HISTORY_LENGTH = max(MIN_HISTORY * 3, 300)
# A published book fills an order only when it is this close in time to the order (a replayed
# backlog of candles must not fill against the book of a later moment).
BOOK_MAX_AGE_US = 5_000_000
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
        self._positions = PositionTracker(
            settings.account, settings.risk.trailing_activation_r, settings.risk.trailing_distance_r
        )
        self._orders = OrderManager(settings.account)
        self._history: dict[str, deque[Candle]] = {
            symbol: deque(maxlen=HISTORY_LENGTH) for symbol in settings.symbols
        }
        self._prices: dict[str, float] = {}
        self._market_time: datetime | None = None
        self._last_snapshot_minute: int | None = None
        self._stream_id = start_stream_id
        # Refused exit orders per (position, rule): a retry needs a new client order id.
        self._exit_attempts: dict[str, int] = {}
        self.stats = ExecutorStats()

    @property
    def portfolio(self) -> Portfolio:
        return self._portfolio

    @property
    def positions(self) -> PositionTracker:
        return self._positions

    @property
    def orders(self) -> OrderManager:
        return self._orders

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
        self._manage_exits(candle.symbol, candle.low, candle.high, candle.close, self._market_time)
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
        self.on_intent(TradeIntent.from_signal(signal))

    def market_risk(self) -> MarketRisk:
        """Volatility and correlations estimated from the candle history the loop holds."""
        return estimate_market_risk({
            symbol: [(c.open_time_us, c.close) for c in history] for symbol, history in self._history.items()
        })

    def on_intent(self, intent: TradeIntent) -> RiskCheck:
        """Risk-check ``intent`` and, when approved, trade it; every step is persisted."""
        account = self._settings.account
        self._store.record_intent(account, intent)
        position_id = f"{account}:{intent.intent_id}"
        check = self._risk.validate(
            intent,
            self._portfolio,
            self._prices,
            self._positions.open_positions(),
            intent.time,
            check_id=f"{position_id}:{'close' if intent.action is IntentAction.CLOSE else 'entry'}-check",
            market=self.market_risk(),
        )
        self._store.record_risk_check(check)
        if not check.approved:
            self.stats.rejected += 1
            log.debug("intent %s rejected: %s", intent.intent_id, [r.value for r in check.reasons])
            return check
        self.stats.approved += 1
        if intent.action is IntentAction.CLOSE:
            position = self._positions.get(check.position_id or "")
            self._exit(position, OrderPurpose.SIGNAL_CLOSE, self._prices.get(position.symbol, intent.entry),
                       intent.time, check)
            return check
        self._enter(intent, check, position_id)
        return check

    def _enter(self, intent: TradeIntent, check: RiskCheck, position_id: str) -> None:
        assert intent.direction is not None and intent.stop_loss is not None and intent.take_profit is not None
        if f"{position_id}:entry" in self._orders:
            # The same intent again (a replayed decision): one intent, one entry.
            log.warning("intent %s was already traded; not entering again", intent.intent_id)
            return
        order = Order(
            order_id=f"{position_id}:entry",
            account=self._settings.account,
            time=intent.time,
            symbol=intent.symbol,
            side=Side.BUY if intent.direction is Direction.LONG else Side.SELL,
            quantity=check.quantity,
            purpose=OrderPurpose.ENTRY,
            check_id=check.check_id,
            position_id=position_id,
            # Protected at the price the RiskAgent sized at: the fill can never cost more.
            order_type=OrderType.LIMIT,
            time_in_force=TimeInForce.IOC,
            limit_price=check.limit_price,
            leverage=check.leverage,
        )
        fill = self._work(order, intent.entry)
        if fill is None:
            return
        holding_s = intent.max_holding_s
        if holding_s is None and self._settings.risk.max_holding_minutes is not None:
            holding_s = self._settings.risk.max_holding_minutes * 60.0
        position = self._positions.open(Position(
            position_id=position_id,
            account=self._settings.account,
            symbol=intent.symbol,
            direction=intent.direction,
            quantity=fill.quantity,
            entry_price=fill.price,
            stop_loss=intent.stop_loss,
            take_profit=intent.take_profit,
            opened_at=fill.time,
            entry_notional_usdt=self._to_usdt(intent.symbol, fill.notional),
            equity_at_entry_usdt=check.equity_usdt,
            fees=fill.fee,
            strategy=intent.strategy,
            leverage=order.leverage,
            loan=fill.loan_change,
            loan_asset=fill.loan_asset,
            invalidation=intent.invalidation,
            max_holding_until=holding_deadline(fill.time, holding_s),
        ))
        self._store.record_position(position, "opened")

    def _work(self, order: Order, reference_price: float) -> Fill | None:
        """Submit and execute ``order``; persist the order, its state changes and its fill."""
        self._orders.submit(order)
        fill = self._orders.execute(
            order.order_id, self._paper, reference_price, self._portfolio, self._book(order.symbol, order.time)
        )
        self._store.record_order(self._orders.get(order.order_id))
        self._store.record_order_events(self._orders.drain_events())
        if fill is not None:
            self._store.record_fill(fill)
            self.stats.fills += 1
        return fill

    def _exit(
        self, position: Position, purpose: OrderPurpose, price: float, when: datetime, check: RiskCheck | None = None
    ) -> None:
        if check is None:
            check = self._risk.validate_exit(
                position, when, check_id=f"{position.position_id}:exit-check", equity_usdt=self._equity_or_zero()
            )
            self._store.record_risk_check(check)
        # A retry after a refused exit needs a fresh client id: the refused order is final.
        base_id = f"{position.position_id}:{purpose.value}"
        attempt = self._exit_attempts.get(base_id, 0)
        self._exit_attempts[base_id] = attempt + 1
        order_id = base_id + (f":{attempt}" if attempt else "")
        order = Order(
            order_id=order_id,
            account=position.account,
            time=when,
            symbol=position.symbol,
            side=position.exit_side,
            quantity=position.quantity,
            purpose=purpose,
            check_id=check.check_id,
            position_id=position.position_id,
            repay_loan=position.loan,
        )
        fill = self._work(order, price)
        if fill is None:
            # A gap far past the stop of a short: the position stays open and is retried
            # on the next tick, rather than the loop dying with it.
            log.error("exit %s not executed, position stays open", order.order_id)
            return
        quote_usdt = self._quote_usdt(position.symbol)
        closed = self._positions.close(position.position_id, fill, purpose, quote_usdt)
        self._exit_attempts = {k: v for k, v in self._exit_attempts.items() if not k.startswith(f"{position.position_id}:")}
        self._store.record_position(closed, "closed")
        self._risk.record_trade_result(when, closed.realized_pnl)

    def _book(self, symbol: str, when: datetime) -> BookTop | None:
        """The published book of ``symbol`` if it is of the order's moment, else None (fixed slippage)."""
        snapshot = self._hot_state.books([symbol]).get(symbol)
        if snapshot is None or abs(snapshot.ts_us - datetime_to_us(when)) > BOOK_MAX_AGE_US:
            return None
        try:
            return BookTop(
                symbol, snapshot.ts_us,
                tuple(BookLevel(price, qty) for price, qty in snapshot.bids),
                tuple(BookLevel(price, qty) for price, qty in snapshot.asks),
            )
        except ValueError as exc:  # one-sided or crossed: not a book to fill against
            log.debug("book of %s not used: %s", symbol, exc)
            return None

    def _manage_exits(self, symbol: str, low: float, high: float, last: float, when: datetime) -> None:
        """Fire the exits the range reached, then move the trailing stops by it."""
        for position, purpose, level in self._positions.exits_triggered(symbol, low, high, when):
            self._exit(position, purpose, last if level is None else level, when)
        for moved in self._positions.trail(symbol, low, high):
            self._store.record_position(moved, "stop_moved", time=when)

    def _check_exits_on_ticks(self) -> None:
        if self._market_time is None:
            return
        for symbol, last in self._hot_state.last_prices(self._settings.symbols).items():
            when = us_to_datetime(last.ts_us)
            if when < self._market_time:
                continue  # older than what the candles already told us
            self._manage_exits(symbol, last.price, last.price, last.price, when)

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

    def _equity_or_zero(self) -> float:
        try:
            return self._equity()
        except MissingPriceError:
            return 0.0

    def _quote_usdt(self, symbol: str) -> float | None:
        try:
            return self._portfolio.to_usdt(INSTRUMENTS[symbol].quote, 1.0, self._prices)
        except MissingPriceError:
            return None

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
