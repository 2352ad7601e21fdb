"""Property: whatever stream of intents, prices, fills and trade results the RiskAgent sees
(NaN, inf, negative values, stops on the wrong side, huge leverage and size included), no
approved entry breaks a limit. The limits are re-derived here, independently of the agent,
by a checker that follows the same stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from triplegain_core.market import INSTRUMENTS, Asset, Side
from triplegain_core.orders import Order, OrderPurpose, OrderType, TimeInForce
from triplegain_core.paper_executor import PaperExecutor
from triplegain_core.portfolio import Portfolio
from triplegain_core.positions import Position
from triplegain_core.risk import MarketRisk, RiskAgent, RiskCheck, RiskLimits
from triplegain_core.signals import Direction, IntentAction, TradeIntent

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
        if not (math.isfinite(equity) and equity > 0):
            broken.append("approved without a valid equity")
        if broken:
            self.violations.extend(broken)
            return
        quote_usdt = 1.0 if INSTRUMENTS[intent.symbol].quote is Asset.USDT else prices["BTC/USDT"]
        worst = entry * (1 + SLIP) if long else entry * (1 - SLIP)
        q = verdict.quantity
        notional = q * worst * quote_usdt
        risk = q * abs(entry - stop) * quote_usdt
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
        # Raises (and fails the stream) if an approved order is more than the account can pay.
        fill = self.executor.execute(order, intent.entry, self.portfolio)
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


# --- the hypothesis stream

adversarial = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -1.0, 1e308, -1e-300, float("nan"), float("inf")]),
)
relative = st.floats(min_value=-0.05, max_value=0.05)


def _mostly(clean: st.SearchStrategy, dirty: st.SearchStrategy) -> st.SearchStrategy:
    """Usually the well-formed value, one time in ten an adversarial one."""
    return st.integers(0, 9).flatmap(lambda roll: dirty if roll == 0 else clean)


@st.composite
def intents(draw: st.DrawFn, n: int, prices: dict[str, float], now: datetime) -> TradeIntent:
    symbol = draw(_mostly(st.sampled_from(SYMBOLS), st.just("DOGE/USDT")))
    price = prices.get(symbol, 1.0)
    action = draw(st.sampled_from([IntentAction.LONG, IntentAction.SHORT, IntentAction.LONG, IntentAction.CLOSE]))
    sign = -1.0 if action is IntentAction.SHORT else 1.0
    entry = draw(_mostly(relative.map(lambda r: price * (1 + r / 10)), adversarial))
    base = entry if math.isfinite(entry) and entry > 0 else price
    # Stops from 0 to 3% on either side: some too far, some on the wrong side.
    stop = draw(_mostly(st.floats(-0.005, 0.03).map(lambda r: base * (1 - sign * r)),
                        st.one_of(st.none(), adversarial)))
    tp = draw(_mostly(st.floats(0.001, 0.06).map(lambda r: base * (1 + sign * r)), st.one_of(st.none(), adversarial)))
    return TradeIntent(
        intent_id=f"i{n}", strategy="fuzz", tested=draw(st.booleans()), symbol=symbol, time=now, action=action,
        entry=entry, stop_loss=stop, take_profit=tp,
        size_fraction=draw(_mostly(st.one_of(st.none(), st.floats(0.001, 1.0)), adversarial)),
        leverage=draw(_mostly(st.one_of(st.none(), st.floats(1.0, 10.0)), st.floats(-1e9, 1e12) | adversarial)),
        invalidation=draw(_mostly(st.none(), adversarial)),
        max_holding_s=draw(_mostly(st.one_of(st.none(), st.floats(1.0, 1e6)), adversarial)),
    )


@st.composite
def markets(draw: st.DrawFn) -> MarketRisk:
    maybe = _mostly(st.floats(-1.0, 1.0), st.one_of(st.none(), st.just(float("nan"))))
    pairs = [frozenset(p) for p in (("BTC/USDT", "XRP/USDT"), ("BTC/USDT", "XRP/BTC"), ("XRP/USDT", "XRP/BTC"))]
    correlations = {pair: value for pair in pairs if (value := draw(maybe)) is not None}
    vols = _mostly(st.floats(0.0, 0.2), st.one_of(st.none(), st.just(float("inf"))))
    volatility = {s: v for s in SYMBOLS if (v := draw(vols)) is not None}
    return MarketRisk(volatility, correlations)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_no_approved_entry_breaks_a_limit(data: st.DataObject) -> None:
    limits = RiskLimits()
    portfolio = Portfolio("a", {
        Asset.USDT: data.draw(st.floats(0.0, 1e6)), Asset.XRP: data.draw(st.floats(0.0, 1e7)),
        Asset.BTC: data.draw(st.floats(0.0, 20.0)),
    })
    account = Account(RiskAgent(limits, FEE, SLIP), Checker(limits), portfolio)
    btc, xrp = data.draw(st.floats(1e3, 1e5)), data.draw(st.floats(0.05, 5.0))
    now = START
    for step in range(data.draw(st.integers(1, 40))):
        prices = {"BTC/USDT": btc, "XRP/USDT": xrp, "XRP/BTC": xrp / btc * data.draw(st.floats(0.97, 1.03))}
        kind = data.draw(st.sampled_from(["intent", "intent", "intent", "close", "loss", "move"]))
        if kind == "intent":
            account.decide(data.draw(intents(step, prices, now)), prices, data.draw(markets()), now)
        elif kind == "close":
            account.close_oldest_at_stop(now)
        elif kind == "loss":
            # Runs of results, so the cooldown does start now and then.
            for pnl in data.draw(st.lists(st.floats(-10.0, 1.0), min_size=1, max_size=6)):
                account.agent.record_trade_result(now, pnl)
                account.checker.trade_result(now, pnl)
        else:
            btc *= data.draw(st.floats(0.8, 1.1))
            xrp *= data.draw(st.floats(0.8, 1.1))
        now += timedelta(minutes=data.draw(st.integers(0, 600)))
    assert account.checker.violations == []


def test_the_stream_approves_and_trades() -> None:
    """Guard against a vacuous property: a plain stream does get entries approved and filled."""
    limits = RiskLimits()
    account = Account(RiskAgent(limits, FEE, SLIP), Checker(limits), Portfolio("a", {Asset.USDT: 10_000.0}))
    calm = MarketRisk({s: 0.01 for s in SYMBOLS}, {})
    for n, symbol in enumerate(["BTC/USDT", "XRP/USDT"]):
        price = {"BTC/USDT": 40_000.0, "XRP/USDT": 1.0}[symbol]
        intent = TradeIntent(intent_id=f"i{n}", strategy="s", tested=True, symbol=symbol, time=START,
                             action=IntentAction.LONG, entry=price, stop_loss=price * 0.99, take_profit=price * 1.02)
        account.decide(intent, {"BTC/USDT": 40_000.0, "XRP/USDT": 1.0, "XRP/BTC": 2.5e-5}, calm, START)
    assert account.fills == 2 and account.checker.violations == []
