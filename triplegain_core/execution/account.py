"""One isolated paper account: its portfolio, positions, orders and risk state, and the path
every intent takes through them.

intent -> RiskAgent (validate, size, leverage) -> OrderManager (client order id) -> paper
executor -> PositionTracker -> Portfolio, each step written to the audit sink under the
account's name. Each strategy (and the TechnicalAgent) trades one such account over the same
market, so nothing one of them does — a loss streak, a drawdown pause, a position, a cash
balance — changes what another may do. The market itself (prices, books, the volatility and
correlation estimates) is shared, read through :class:`MarketView`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.config import Settings
from triplegain_core.execution.audit import AuditSink
from triplegain_core.execution.order_manager import OrderBookState, OrderManager
from triplegain_core.execution.paper import PaperExecutor
from triplegain_core.marketdata.snapshot import BookTop
from triplegain_core.model.market import INSTRUMENTS, Side, us_to_datetime
from triplegain_core.model.orders import Fill, Order, OrderPurpose, OrderState, OrderType, TimeInForce
from triplegain_core.model.quotes import LastPrice
from triplegain_core.model.signals import Direction, IntentAction, Signal, SignalAction, TradeIntent
from triplegain_core.portfolio.balances import MissingPriceError, Portfolio, PortfolioSnapshot, PortfolioState
from triplegain_core.portfolio.positions import Position, PositionTracker, holding_deadline
from triplegain_core.risk.rules import MarketRiskEstimate, RiskAgent, RiskCheck, RiskReason, RiskState
from triplegain_core.strategies.interface import StrategyState

log = logging.getLogger(__name__)


def strategy_account_name(base: str, strategy: str) -> str:
    """The paper account a strategy trades: ``<base>:<strategy>`` (e.g. ``paper:wavetrend``)."""
    return f"{base}:{strategy}"


class MarketView(Protocol):
    """The shared market an account trades in."""

    @property
    def prices(self) -> Mapping[str, float]:
        """Latest price per symbol."""
        ...

    @property
    def prices_version(self) -> int:
        """A count that changes whenever one of :attr:`prices` does."""
        ...

    def market_risk(self) -> MarketRiskEstimate:
        """Volatility and correlation estimates for the risk rules."""
        ...

    def now_us(self) -> int | None:
        """The latest moment the market is known at (candle close or trade), in µs; None before any."""
        ...

    def book(self, symbol: str, when: datetime) -> BookTop | None:
        """The book to fill an order of ``when`` against, or None (fixed slippage)."""
        ...

    @property
    def entry_blocks(self) -> tuple[RiskReason, ...]:
        """The entry blocks in force over every account (empty: entries allowed)."""
        ...


@dataclass(slots=True)
class AccountStats:
    """Counters of one account over a run."""

    signals: int = 0
    approved: int = 0
    rejected: int = 0
    fills: int = 0
    # Orders the venue (here the paper executor) refused: the failure breaker counts them.
    rejected_orders: int = 0


class AccountState(BaseModel):
    """Everything one account must remember across a restart (a checkpoint of it): balances
    and loans, open positions (stops, trailing state, limits), working orders, risk state,
    the exit attempts of its open positions, its counters, and what its strategy remembers
    about each symbol (filled in by the kernel, which owns the strategies)."""

    model_config = ConfigDict(frozen=True)

    name: str
    strategy: str | None = None
    portfolio: PortfolioState
    positions: tuple[Position, ...] = ()
    orders: OrderBookState = OrderBookState()
    risk: RiskState = RiskState()
    exit_attempts: dict[str, int] = Field(default_factory=dict)
    stats: AccountStats = Field(default_factory=AccountStats)
    strategy_states: tuple[StrategyState, ...] = ()


class StrategyAccount:
    """One paper account and its intent -> risk -> order -> fill -> position path.

    ``source`` is what its signals' intents name as their source (``technical`` for the
    TechnicalAgent's account, ``strategy`` for a strategy's)."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        store: AuditSink,
        market: MarketView,
        *,
        strategy: str | None = None,
        tested: bool = False,
        source: str = "strategy",
    ) -> None:
        self.name = name
        self.strategy = strategy
        self.tested = tested
        self.source = source
        self._settings = settings
        self._store = store
        self._market = market
        self.risk = RiskAgent(settings.risk, fee_rate=settings.fee_rate, slippage=settings.slippage)
        self._paper = PaperExecutor(fee_rate=settings.fee_rate, slippage=settings.slippage)
        self.portfolio = Portfolio(name, settings.starting_balances)
        self.positions = PositionTracker(name, settings.risk.trailing_activation_r, settings.risk.trailing_distance_r)
        self.orders = OrderManager(name)
        # Refused exit orders per (position, rule): a retry needs a new client order id.
        self._exit_attempts: dict[str, int] = {}
        self.stats = AccountStats()
        # The latest valuation: the market's prices version and the portfolio's changes it was
        # made at, and the equity. Every account is valued at least twice a moment (risk state,
        # snapshot) at the same prices.
        self._valued_prices = self._valued_changes = -1
        self._valued_equity = 0.0

    def export_state(self) -> AccountState:
        """The account as it is now, for a checkpoint (see :meth:`import_state`)."""
        return AccountState(
            name=self.name, strategy=self.strategy, portfolio=self.portfolio.export_state(),
            positions=self.positions.export_state(), orders=self.orders.export_state(),
            risk=self.risk.export_state(), exit_attempts=dict(self._exit_attempts),
            stats=AccountStats(self.stats.signals, self.stats.approved, self.stats.rejected, self.stats.fills),
        )

    def import_state(self, state: AccountState) -> None:
        """Take a checkpoint of this account in place of what it holds now."""
        if state.name != self.name:
            raise ValueError(f"the checkpoint of {state.name} cannot restore account {self.name}")
        self.portfolio.import_state(state.portfolio)
        self.positions.import_state(state.positions)
        self.orders.import_state(state.orders)
        self.risk.import_state(state.risk)
        self._exit_attempts = dict(state.exit_attempts)
        self.stats.signals, self.stats.approved = state.stats.signals, state.stats.approved
        self.stats.rejected, self.stats.fills = state.stats.rejected, state.stats.fills

    def close_by_hand(self, position_id: str, when: datetime) -> bool:
        """Close the open position ``position_id`` at the market through the exit path (exit
        risk check, order, fill, position closed as ``manual_close``); False when it is not
        open here, has no price or the exit did not fill."""
        try:
            position = self.positions.get(position_id)
        except KeyError:
            return False
        price = self._market.prices.get(position.symbol)
        if price is None:
            log.error("%s: no %s price to close %s at", self.name, position.symbol, position_id)
            return False
        self._exit(position, OrderPurpose.MANUAL_CLOSE, price, when)
        return all(p.position_id != position_id for p in self.positions.open_positions())

    def cancel_working_orders(self, when: datetime, reason: str) -> int:
        """Cancel every working order of the account; how many were cancelled."""
        working = self.orders.open_orders()
        for managed in working:
            self.orders.cancel(managed.order.order_id, when, reason)
            self._store.record_order(self.orders.get(managed.order.order_id))
        self._store.record_order_events(self.orders.drain_events())
        return len(working)

    def on_signal(self, signal: Signal) -> RiskCheck:
        """Persist ``signal`` and trade the intent it stands for (its source the account's)."""
        self.stats.signals += 1
        intent = signal.to_trade_intent(source=self.source, tested=self.tested)
        if signal.action is SignalAction.CLOSE:
            # The signals table holds entries only (a CLOSE has no stop or direction), so a
            # CLOSE is kept as its trade intent, whose id is the signal's id.
            intent = intent.model_copy(update={"signal_id": None})
        else:
            self._store.record_signal(signal)
        return self.on_intent(intent)

    def on_intent(self, intent: TradeIntent) -> RiskCheck:
        """Risk-check ``intent`` and, when approved, trade it; every step is persisted."""
        self._store.record_intent(self.name, intent)
        position_id = f"{self.name}:{intent.intent_id}"
        prices = self._market.prices
        check = self.risk.validate(
            intent,
            self.portfolio,
            prices,
            self.positions.open_positions(),
            intent.time,
            check_id=f"{position_id}:{'close' if intent.action is IntentAction.CLOSE else 'entry'}-check",
            market=self._market.market_risk(),
            blocked=self._market.entry_blocks,
        )
        self._store.record_risk_check(check)
        if not check.approved:
            self.stats.rejected += 1
            log.debug("%s: intent %s rejected: %s", self.name, intent.intent_id, [r.value for r in check.reasons])
            return check
        self.stats.approved += 1
        if intent.action is IntentAction.CLOSE:
            position = self.positions.get(check.position_id or "")
            # At the market's price when it is worked, whatever price the intent names.
            self._exit(position, OrderPurpose.SIGNAL_CLOSE, prices[position.symbol], self._execution_time(intent.time),
                       check)
            return check
        self._enter(intent, check, position_id)
        return check

    def _enter(self, intent: TradeIntent, check: RiskCheck, position_id: str) -> None:
        assert intent.direction is not None and intent.stop_loss is not None and intent.take_profit is not None
        if f"{position_id}:entry" in self.orders:
            # The same intent again (a replayed decision): one intent, one entry.
            log.warning("%s: intent %s was already traded; not entering again", self.name, intent.intent_id)
            return
        order = Order(
            order_id=f"{position_id}:entry",
            account=self.name,
            time=self._execution_time(intent.time),
            symbol=intent.symbol,
            side=Side.BUY if intent.direction is Direction.LONG else Side.SELL,
            quantity=check.quantity,
            purpose=OrderPurpose.ENTRY,
            check_id=check.check_id,
            position_id=position_id,
            # Limited at the price the RiskAgent sized at, or the stated entry when better: the
            # fill can never cost more, and a limit the market does not reach does not fill.
            order_type=OrderType.LIMIT,
            time_in_force=TimeInForce.IOC,
            limit_price=check.limit_price,
            leverage=check.leverage,
        )
        # The market's price when the order is worked: the stated entry is only its limit.
        fill = self._work(order, self._market.prices[intent.symbol])
        if fill is None:
            return
        holding_s = intent.max_holding_s
        if holding_s is None and self._settings.risk.max_holding_minutes is not None:
            holding_s = self._settings.risk.max_holding_minutes * 60.0
        position = self.positions.open(Position(
            position_id=position_id,
            account=self.name,
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
        self.orders.submit(order)
        fill = self.orders.execute(
            order.order_id, self._paper, reference_price, self.portfolio, self._market.book(order.symbol, order.time)
        )
        managed = self.orders.get(order.order_id)
        self._store.record_order(managed)
        if managed.state is OrderState.REJECTED:
            self.stats.rejected_orders += 1
        self._store.record_order_events(self.orders.drain_events())
        if fill is not None:
            self._store.record_fill(fill)
            self.stats.fills += 1
        return fill

    def _exit(
        self, position: Position, purpose: OrderPurpose, price: float, when: datetime, check: RiskCheck | None = None,
        crossed_at: datetime | None = None,
    ) -> None:
        if check is None:
            check = self.risk.validate_exit(
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
            log.error("%s: exit %s not executed, position stays open", self.name, order.order_id)
            return
        closed = self.positions.close(position.position_id, fill, purpose, self._quote_usdt(position.symbol),
                                      crossed_at)
        prefix = f"{position.position_id}:"
        self._exit_attempts = {k: v for k, v in self._exit_attempts.items() if not k.startswith(prefix)}
        self._store.record_position(closed, "closed")
        self.risk.record_trade_result(when, closed.realized_pnl)

    def manage_exits(
        self, symbol: str, low: float, high: float, last: float, when: datetime, first: float | None = None,
        seen_after: LastPrice | None = None,
    ) -> None:
        """Fire the exits the range ``[low, high]`` reached, then move the trailing stops by it.

        ``first`` is the range's first price (a candle's open; a tick's price): an exit whose
        level the market gapped through fills there, the first price beyond it, not at the
        level it never traded at (None: the range opened where the last one ended).

        ``seen_after`` marks a range the executor saw only later (it could not read the market
        while it happened): an exit it reached fills at that price, the first seen after, at its
        time, and the position records when its level was crossed (``exit_crossed_at``)."""
        if not self.positions.holds(symbol):
            return  # the common case, on every tick of every account: nothing to watch
        for position, purpose, level in self.positions.exits_triggered(symbol, low, high, when, first):
            if seen_after is not None:
                seen = us_to_datetime(seen_after.ts_us)
                log.warning("%s: %s of %s crossed at %s while the market could not be seen: filled at the first"
                            " price seen after, %s at %s", self.name, purpose.value, position.position_id,
                            when.isoformat(), seen_after.price, seen.isoformat())
                self._exit(position, purpose, seen_after.price, seen, crossed_at=when)
                continue
            price = last if level is None else _first_beyond(position, purpose, level, first)
            self._exit(position, purpose, price, when)
        for moved in self.positions.trail(symbol, low, high):
            self._store.record_position(moved, "stop_moved", time=when)

    def _execution_time(self, stated: datetime) -> datetime:
        """When an order of an intent stated at ``stated`` is worked: the market's latest moment
        (a decision is often timed at the last closed candle, older than the market it trades in)."""
        now_us = self._market.now_us()
        return stated if now_us is None else max(stated, us_to_datetime(now_us))

    def observe_equity(self, when: datetime) -> bool:
        """Feed the account's equity to its risk state; False while it cannot be valued."""
        try:
            equity = self.equity_usdt()
        except MissingPriceError:
            return False
        self.risk.observe_equity(when, equity)
        return True

    def equity_usdt(self) -> float:
        """The account's value at the market's prices (MissingPriceError while one is unknown)."""
        prices_version, changes = self._market.prices_version, self.portfolio.changes
        if prices_version == self._valued_prices and changes == self._valued_changes:
            return self._valued_equity
        equity = self.portfolio.equity_usdt(self._market.prices)
        self._valued_prices, self._valued_changes, self._valued_equity = prices_version, changes, equity
        return equity

    def snapshot(self, when: datetime, prices: dict[str, float] | None = None) -> PortfolioSnapshot | None:
        """The holdings and their value at ``when`` at the market's prices (``prices``: a copy
        of them the snapshot keeps, taken when not given), or None while they cannot be valued."""
        try:
            equity = self.equity_usdt()
        except MissingPriceError:
            return None
        return self.portfolio.snapshot(when, dict(self._market.prices) if prices is None else prices, equity)

    def _equity_or_zero(self) -> float:
        try:
            return self.equity_usdt()
        except MissingPriceError:
            return 0.0

    def _quote_usdt(self, symbol: str) -> float | None:
        try:
            return self.portfolio.to_usdt(INSTRUMENTS[symbol].quote, 1.0, self._market.prices)
        except MissingPriceError:
            return None

    def _to_usdt(self, symbol: str, quote_amount: float) -> float:
        return self.portfolio.to_usdt(INSTRUMENTS[symbol].quote, quote_amount, self._market.prices)


def _first_beyond(position: Position, purpose: OrderPurpose, level: float, first: float | None) -> float:
    """The price an exit at ``level`` fills at: the level, or ``first`` when the market opened
    already beyond it (a stop gapped through fills worse; a take-profit gapped through fills at
    the better opening price: either way the first price the market offered)."""
    if first is None:
        return level
    # A stop, trailing stop or invalidation level lies against the position; a take-profit for it.
    against = purpose is not OrderPurpose.TAKE_PROFIT
    below = first < level
    gapped = below if (position.direction is Direction.LONG) == against else first > level
    return first if gapped else level
