"""An independent checker of the risk rules: re-derives every limit while following the same
stream of intents, prices, fills and results as a RiskAgent-driven account. One checker, two drivers:
the hypothesis property test and the risk fuzz benchmark."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from triplegain_core.execution.paper import PaperExecutor, UnfillableOrderError
from triplegain_core.model.market import INSTRUMENTS, Asset, Side
from triplegain_core.model.orders import Order, OrderPurpose, OrderType, TimeInForce
from triplegain_core.model.signals import Direction, IntentAction, TradeIntent
from triplegain_core.portfolio.balances import Portfolio
from triplegain_core.portfolio.positions import Position
from triplegain_core.risk.rules import MarketRisk, RiskAgent, RiskCheck, RiskLimits

START = datetime(2024, 3, 1, tzinfo=UTC)
FEE, SLIP = 0.001, 0.0005
TOL = 1e-9
SYMBOLS = list(INSTRUMENTS)


@dataclass
class Checker:
    """Re-derives every limit from the stream it sees; counts approved entries that break one."""

    limits: RiskLimits
    peak: float | None = None
    day: object = None
    day_start: float = 0.0
    streak: int = 0
    cooldown_until: datetime | None = None
    violations: list[str] = field(default_factory=list)

    def observe(self, now: datetime, equity: float) -> None:
        if not math.isfinite(equity):
            return
        if now.date() != self.day:
            self.day, self.day_start = now.date(), equity
        self.peak = equity if self.peak is None else max(self.peak, equity)

    def trade_result(self, now: datetime, pnl: float) -> None:
        if pnl < 0:
            self.streak += 1
            if self.streak >= self.limits.consecutive_losses:
                self.cooldown_until, self.streak = now + timedelta(minutes=self.limits.cooldown_minutes), 0
        else:
            self.streak = 0

    def check(
        self, intent: TradeIntent, verdict: RiskCheck, portfolio: Portfolio, prices: dict[str, float],
        positions: list[Position], market: MarketRisk, now: datetime,
    ) -> None:
        limits = self.limits
        equity = _equity(portfolio, prices)
        if math.isfinite(equity) and equity > 0:
            self.observe(now, equity)
        if not verdict.approved:
            if verdict.quantity != 0.0 or verdict.notional_usdt != 0.0:
                self.violations.append("rejected check carries a size")
            return
        if intent.action is IntentAction.CLOSE:
            # Exits are always allowed, but only of a position that exists, and all of it.
            held = [p for p in positions if p.symbol == intent.symbol]
            if not held or verdict.quantity != held[0].quantity:
                self.violations.append("close approved without a matching position")
            return
        broken = []
        entry, stop, tp = intent.entry, intent.stop_loss, intent.take_profit
        long = intent.action is IntentAction.LONG
        sane = all(v is not None and math.isfinite(v) and v > 0 for v in (entry, stop, tp))
        if not sane:
            broken.append("non-finite or missing level")
        elif (stop >= entry or tp <= entry) if long else (stop <= entry or tp >= entry):
            broken.append("levels on the wrong side")
        elif abs(entry - stop) > limits.max_stop_distance * entry * (1 + TOL):
            broken.append("stop too far")
        elif abs(entry - prices[intent.symbol]) > limits.max_entry_deviation * prices[intent.symbol]:
            broken.append("entry away from the market")
        elif (stop >= prices[intent.symbol]) if long else (stop <= prices[intent.symbol]):
            broken.append("stop already crossed by the market")
        if not (math.isfinite(equity) and equity > 0):
            broken.append("approved without a valid equity")
        if broken:
            self.violations.extend(broken)
            return
        quote_usdt = 1.0 if INSTRUMENTS[intent.symbol].quote is Asset.USDT else prices["BTC/USDT"]
        # The order fills at the market (never at the stated entry), limited at the stated entry.
        market_price = prices[intent.symbol]
        worst = market_price * (1 + SLIP) if long else market_price * (1 - SLIP)
        stated = entry * (1 + SLIP) if long else entry * (1 - SLIP)
        limit = verdict.limit_price
        tighter = min(worst, stated) if long else max(worst, stated)
        if limit is None or (limit > tighter * (1 + TOL) if long else limit < tighter * (1 - TOL)):
            broken.append(f"limit {limit} looser than the market's {worst} or the stated entry's {stated}")
        q = verdict.quantity
        notional = q * worst * quote_usdt
        risk = q * abs(market_price - stop) * quote_usdt
        factor = 1.0
        if intent.symbol != "BTC/USDT":
            corr = market.correlations.get(frozenset((intent.symbol, "BTC/USDT")))
            if corr is None or not math.isfinite(corr) or corr > limits.btc_correlation_threshold:
                factor = limits.btc_correlation_size_factor
        if risk > factor * limits.risk_per_trade * equity * (1 + TOL):
            broken.append(f"risk {risk} above {factor} x 1% of {equity}")
        if notional * (1 + FEE) > factor * limits.max_position_fraction * equity * (1 + TOL):
            broken.append(f"notional {notional} above {factor} x 20% of {equity}")
        if intent.size_fraction is not None and notional > intent.size_fraction * equity * (1 + TOL):
            broken.append("larger than the size asked for")
        if notional < limits.min_notional_usdt * (1 - TOL):
            broken.append("below the minimum notional")
        vol = market.volatility.get(intent.symbol)
        cap = 1.0
        if intent.tested and vol is not None and math.isfinite(vol) and vol >= 0:
            cap = limits.max_leverage
            if vol > limits.high_volatility:
                cap = max(1.0, cap * limits.high_volatility / vol)
        if verdict.leverage > cap * (1 + TOL):
            broken.append(f"leverage {verdict.leverage} above {cap}")
        if self.peak and (self.peak - equity) / self.peak >= limits.max_drawdown:
            broken.append("approved in a drawdown pause")
        if self.day_start > 0 and (self.day_start - equity) / self.day_start >= limits.daily_loss_limit:
            broken.append("approved past the daily loss limit")
        if self.cooldown_until is not None and now < self.cooldown_until:
            broken.append("approved in a loss cooldown")
        if any(p.symbol == intent.symbol for p in positions):
            broken.append("second position on a symbol")
        correlated = 0
        for p in positions:
            corr = market.correlations.get(frozenset((intent.symbol, p.symbol)))
            correlated += corr is None or not math.isfinite(corr) or abs(corr) >= limits.correlation_threshold
        if correlated >= limits.max_correlated_positions:
            broken.append("too many correlated positions")
        self.violations.extend(broken)


def _equity(portfolio: Portfolio, prices: dict[str, float]) -> float:
    value = 0.0
    for asset in Asset:
        amount = portfolio.balance(asset) - portfolio.liabilities[asset]
        if amount:
            value += amount * (1.0 if asset is Asset.USDT else prices[f"{asset.value}/USDT"])
    return value


@dataclass
class Account:
    """The paper account the stream trades: the agent under test and what it has opened."""

    agent: RiskAgent
    checker: Checker
    portfolio: Portfolio
    executor: PaperExecutor = field(default_factory=lambda: PaperExecutor(FEE, SLIP))
    positions: list[Position] = field(default_factory=list)
    decisions: int = 0
    fills: int = 0
    unfilled: int = 0

    def decide(self, intent: TradeIntent, prices: dict[str, float], market: MarketRisk, now: datetime) -> None:
        """Validate one intent; trade it when approved, and check the verdict independently."""
        self.decisions += 1
        verdict = self.agent.validate(intent, self.portfolio, prices, self.positions, now, f"c{self.decisions}", market)
        self.checker.check(intent, verdict, self.portfolio, prices, self.positions, market, now)
        if not verdict.approved or intent.action is IntentAction.CLOSE:
            return
        long = intent.action is IntentAction.LONG
        order = Order(
            order_id=f"o{self.decisions}", account="a", time=now, symbol=intent.symbol,
            side=Side.BUY if long else Side.SELL, quantity=verdict.quantity, purpose=OrderPurpose.ENTRY,
            check_id=verdict.check_id, position_id=f"p{self.decisions}", order_type=OrderType.LIMIT,
            time_in_force=TimeInForce.IOC, limit_price=verdict.limit_price, leverage=verdict.leverage,
        )
        # Filled at the market; a stated entry the market does not reach leaves nothing filled.
        # Raises InsufficientBalanceError (and fails the stream) if an approved order is more
        # than the account can pay.
        try:
            fill = self.executor.execute(order, prices[intent.symbol], self.portfolio)
        except UnfillableOrderError:
            self.unfilled += 1
            return
        self.fills += 1
        self.positions.append(Position(
            position_id=order.position_id, account="a", symbol=intent.symbol,
            direction=Direction.LONG if long else Direction.SHORT, quantity=fill.quantity,
            entry_price=fill.price, stop_loss=intent.stop_loss, take_profit=intent.take_profit, opened_at=now,
            entry_notional_usdt=verdict.notional_usdt, equity_at_entry_usdt=verdict.equity_usdt, fees=fill.fee,
            leverage=verdict.leverage, loan=fill.loan_change, loan_asset=fill.loan_asset,
        ))

    def close_oldest_at_stop(self, now: datetime) -> None:
        """Close the oldest position at its stop (the worst planned exit): it must be payable."""
        if not self.positions:
            return
        position = self.positions.pop(0)
        order = Order(
            order_id=f"x{position.position_id}", account="a", time=now, symbol=position.symbol,
            side=position.exit_side, quantity=position.quantity, purpose=OrderPurpose.STOP_LOSS,
            check_id="x", position_id=position.position_id, repay_loan=position.loan,
        )
        fill = self.executor.execute(order, position.stop_loss, self.portfolio)
        pnl = position.gross_pnl(fill.price) - position.fees - fill.fee
        self.agent.record_trade_result(now, pnl)
        self.checker.trade_result(now, pnl)
