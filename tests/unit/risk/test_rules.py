"""RiskAgent: one test per rule (each fails if its rule is removed), and a sizing property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triplegain_core.execution.paper import PaperExecutor, UnfillableOrderError
from triplegain_core.model.market import INSTRUMENTS, Asset, Side
from triplegain_core.model.orders import Order, OrderPurpose, OrderType, TimeInForce
from triplegain_core.model.signals import (
    Direction,
    IntentAction,
    Signal,
    SignalAction,
    TradeIntent,
)
from triplegain_core.portfolio.balances import Portfolio
from triplegain_core.portfolio.positions import Position
from triplegain_core.risk.rules import (
    MarketRisk,
    RiskAdjustment,
    RiskAgent,
    RiskCheck,
    RiskLimits,
    RiskReason,
    estimate_market_risk,
)

DAY1 = datetime(2024, 3, 1, 9, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
FEE, SLIP = 0.001, 0.0005
PRICES = {"BTC/USDT": 40_000.0, "XRP/USDT": 1.0, "XRP/BTC": 1.0 / 40_000.0}
# A quiet, uncorrelated market: no correlation rule and no volatility rule binds.
CALM = MarketRisk(
    volatility=dict.fromkeys(INSTRUMENTS, 0.02),
    correlations={frozenset(pair): 0.0 for pair in (("BTC/USDT", "XRP/USDT"), ("BTC/USDT", "XRP/BTC"),
                                                     ("XRP/USDT", "XRP/BTC"))},
)


def _signal(
    symbol: str = "XRP/USDT", direction: Direction = Direction.LONG, entry: float = 1.0, stop_fraction: float = 0.01
) -> Signal:
    sign = 1.0 if direction is Direction.LONG else -1.0
    return Signal(
        signal_id=f"sig:{symbol}", strategy="test", strategy_version="1", symbol=symbol, timeframe="1m", time=DAY1,
        action=SignalAction(direction.value), strength=0.9, entry=entry,
        stop_loss=entry * (1 - sign * stop_fraction), take_profit=entry * (1 + sign * 2 * stop_fraction),
        reason="test", indicators={},
    )


def _position(symbol: str, direction: Direction = Direction.LONG, quantity: float = 10.0) -> Position:
    sign = 1.0 if direction is Direction.LONG else -1.0
    price = PRICES[symbol]
    return Position(
        position_id=f"pos:{symbol}", account="a", symbol=symbol, direction=direction, quantity=quantity,
        entry_price=price, stop_loss=price * (1 - sign * 0.01), take_profit=price * (1 + sign * 0.02),
        opened_at=DAY1, entry_notional_usdt=10.0, equity_at_entry_usdt=1000.0,
    )


def _validate(
    agent: RiskAgent,
    signal: Signal,
    portfolio: Portfolio,
    prices: dict[str, float] = PRICES,
    positions: tuple[Position, ...] = (),
    now: datetime = DAY1,
    market: MarketRisk = CALM,
) -> RiskCheck:
    return agent.validate(signal, portfolio, prices, positions, now, check_id="chk", market=market)


def _usdt(amount: float) -> Portfolio:
    return Portfolio("a", {Asset.USDT: amount})


def test_size_is_one_percent_risk_over_stop_distance() -> None:
    # Cap relaxed so the risk rule is what binds (with the defaults the 20% cap always binds first).
    agent = RiskAgent(RiskLimits(max_position_fraction=1.0), FEE, SLIP)
    check = _validate(agent, _signal(stop_fraction=0.02), _usdt(10_000.0))
    assert check.approved and check.reasons == (RiskReason.APPROVED,)
    assert check.quantity == pytest.approx(100.0 / 0.02)
    assert check.risk_usdt == pytest.approx(100.0)
    assert check.equity_usdt == 10_000.0
    assert check.notional_usdt == pytest.approx(5000.0 * 1.0005)


def test_size_values_the_stop_in_usdt_for_xrp_btc() -> None:
    agent = RiskAgent(RiskLimits(max_position_fraction=1.0), FEE, SLIP)
    signal = _signal("XRP/BTC", entry=2.5e-5, stop_fraction=0.02)
    check = _validate(agent, signal, Portfolio("a", {Asset.BTC: 0.25}))  # 10,000 USDT of BTC
    per_unit_usdt = 2.5e-5 * 0.02 * 40_000.0
    assert check.approved
    assert check.quantity == pytest.approx(100.0 / per_unit_usdt)
    assert check.risk_usdt == pytest.approx(100.0)


def test_twenty_percent_cap_binds() -> None:
    agent = RiskAgent(RiskLimits(), FEE, SLIP)
    check = _validate(agent, _signal(stop_fraction=0.01), _usdt(10_000.0))
    assert check.approved
    assert check.quantity < 100.0 / 0.01
    assert check.quantity * 1.0005 * (1 + FEE) == pytest.approx(2000.0)
    assert check.notional_usdt <= 2000.0
    assert check.risk_usdt < 100.0


def test_stop_further_than_two_percent_is_rejected() -> None:
    agent = RiskAgent(RiskLimits(), FEE, SLIP)
    far = _validate(agent, _signal(stop_fraction=0.025), _usdt(10_000.0))
    assert not far.approved and far.reasons == (RiskReason.STOP_TOO_FAR,)
    assert far.quantity == 0.0 and far.notional_usdt == 0.0 and far.risk_usdt == 0.0
    assert _validate(agent, _signal(stop_fraction=0.02), _usdt(10_000.0)).approved
    with_xrp = Portfolio("a", {Asset.USDT: 10_000.0, Asset.XRP: 5000.0})
    short = _validate(agent, _signal(direction=Direction.SHORT, stop_fraction=0.03), with_xrp)
    assert RiskReason.STOP_TOO_FAR in short.reasons


def _half_xrp() -> Portfolio:
    return Portfolio("a", {Asset.USDT: 5000.0, Asset.XRP: 5000.0})  # 10,000 USDT at XRP = 1


def test_daily_loss_limit_of_three_percent() -> None:
    agent = RiskAgent(RiskLimits(), FEE, SLIP)
    agent.observe_equity(DAY1.replace(hour=0), 10_000.0)
    down_2_9 = {**PRICES, "XRP/USDT": 0.942}  # equity 9,710
    down_3_5 = {**PRICES, "XRP/USDT": 0.93}  # equity 9,650
    assert _validate(agent, _signal(entry=0.93), _half_xrp(), down_2_9).approved
    check = _validate(agent, _signal(entry=0.93), _half_xrp(), down_3_5)
    assert not check.approved and check.reasons == (RiskReason.DAILY_LOSS_LIMIT,)
    # The next UTC day starts from its own first equity.
    assert _validate(agent, _signal(entry=0.93), _half_xrp(), down_3_5, now=DAY2).approved


def test_drawdown_of_ten_percent_pauses_entries_across_days() -> None:
    agent = RiskAgent(RiskLimits(), FEE, SLIP)
    agent.observe_equity(DAY1, 10_000.0)
    down_9_5 = {**PRICES, "XRP/USDT": 0.81}  # equity 9,050
    down_11 = {**PRICES, "XRP/USDT": 0.78}  # equity 8,900
    assert _validate(agent, _signal(entry=0.81), _half_xrp(), down_9_5, now=DAY2).approved
    later = DAY2 + timedelta(days=1)
    check = _validate(agent, _signal(entry=0.78), _half_xrp(), down_11, now=later)
    assert not check.approved and check.reasons == (RiskReason.DRAWDOWN_PAUSE,)
    assert agent.paused(later, 8900.0)
    assert not agent.paused(later, 9500.0)  # recovering above 90% of the peak lifts the pause


def test_existing_position_on_the_symbol_blocks_a_new_entry() -> None:
    agent = RiskAgent(RiskLimits(), FEE, SLIP)
    portfolio = _usdt(10_000.0)
    check = _validate(agent, _signal(), portfolio, positions=(_position("XRP/USDT"),))
    assert not check.approved and check.reasons == (RiskReason.POSITION_ALREADY_OPEN,)
    assert _validate(agent, _signal(), portfolio, positions=(_position("BTC/USDT"),)).approved


def test_long_is_capped_by_the_quote_balance() -> None:
    agent = RiskAgent(RiskLimits(), FEE, SLIP)
    portfolio = Portfolio("a", {Asset.USDT: 1000.0, Asset.XRP: 100_000.0})  # equity 101,000
    check = _validate(agent, _signal(), portfolio)
    assert check.approved
    assert check.quantity * 1.0005 * (1 + FEE) == pytest.approx(1000.0)
    assert check.quantity * 1.0005 * (1 + FEE) <= 1000.0
    broke = _validate(agent, _signal(), Portfolio("a", {Asset.USDT: 3.0, Asset.XRP: 100_000.0}))
    assert not broke.approved and broke.reasons == (RiskReason.INSUFFICIENT_BALANCE,)


def test_short_is_capped_by_base_inventory_and_buyback_quote() -> None:
    agent = RiskAgent(RiskLimits(), FEE, SLIP)
    short = _signal(direction=Direction.SHORT)
    few_xrp = _validate(agent, short, Portfolio("a", {Asset.USDT: 10_000.0, Asset.XRP: 100.0}))
    assert few_xrp.approved and few_xrp.quantity == pytest.approx(100.0) and few_xrp.quantity <= 100.0
    # Selling XRP for BTC with no BTC: the buy-back at the stop could not be paid.
    with_xrp = Portfolio("a", {Asset.USDT: 10_000.0, Asset.XRP: 5000.0})
    no_btc = _validate(agent, _signal("XRP/BTC", Direction.SHORT, entry=2.5e-5), with_xrp)
    assert not no_btc.approved and no_btc.reasons == (RiskReason.INSUFFICIENT_BALANCE,)


def test_base_held_for_an_open_long_is_not_sold_short() -> None:
    agent = RiskAgent(RiskLimits(), FEE, SLIP)
    portfolio = Portfolio("a", {Asset.USDT: 10_000.0, Asset.XRP: 1000.0, Asset.BTC: 1.0})
    long_xrp_usdt = _position("XRP/USDT", quantity=1000.0)  # all the XRP is the long's
    check = _validate(agent, _signal("XRP/BTC", Direction.SHORT, entry=2.5e-5), portfolio, positions=(long_xrp_usdt,))
    assert not check.approved and check.reasons == (RiskReason.INSUFFICIENT_BALANCE,)


def test_size_below_minimum() -> None:
    agent = RiskAgent(RiskLimits(), FEE, SLIP)
    check = _validate(agent, _signal(), _usdt(20.0))  # 20% of 20 USDT < 5 USDT
    assert not check.approved and check.reasons == (RiskReason.SIZE_BELOW_MINIMUM,)


def test_missing_price() -> None:
    agent = RiskAgent(RiskLimits(), FEE, SLIP)
    check = _validate(agent, _signal("XRP/BTC", entry=2.5e-5), _usdt(1000.0), {"XRP/BTC": 2.5e-5})
    assert not check.approved and check.reasons == (RiskReason.NO_PRICE,)


def test_all_reasons_are_collected() -> None:
    agent = RiskAgent(RiskLimits(), FEE, SLIP)
    check = _validate(agent, _signal(stop_fraction=0.05), _usdt(20.0), positions=(_position("XRP/USDT"),))
    assert set(check.reasons) == {
        RiskReason.STOP_TOO_FAR, RiskReason.POSITION_ALREADY_OPEN, RiskReason.SIZE_BELOW_MINIMUM,
    }


def test_exits_are_always_allowed_even_when_paused() -> None:
    agent = RiskAgent(RiskLimits(), FEE, SLIP)
    agent.observe_equity(DAY1, 10_000.0)
    assert agent.paused(DAY1, 5000.0)
    position = _position("XRP/USDT")
    check = agent.validate_exit(position, DAY1, check_id="exit", equity_usdt=5000.0)
    assert check.approved and check.reasons == (RiskReason.EXIT_ALWAYS_ALLOWED,)
    assert check.position_id == position.position_id and check.quantity == position.quantity


def _intent(
    symbol: str = "XRP/USDT", action: IntentAction = IntentAction.LONG, entry: float = 1.0,
    stop: float | None = 0.99, take_profit: float | None = 1.02, **extra: object,
) -> TradeIntent:
    if action is IntentAction.SHORT and stop == 0.99 and take_profit == 1.02:
        stop, take_profit = 1.01, 0.98
    return TradeIntent(
        intent_id="i1", strategy="s", symbol=symbol, time=DAY1, action=action, entry=entry,
        stop_loss=stop, take_profit=take_profit, **extra,
    )


def _rejected_for(check: RiskCheck, reason: RiskReason) -> bool:
    return not check.approved and reason in check.reasons and check.quantity == 0.0


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"entry": float("nan")}, RiskReason.INVALID_ENTRY),
        ({"entry": -1.0}, RiskReason.INVALID_ENTRY),
        ({"entry": 1e-300, "stop": 0.99e-300, "take_profit": 2e-300}, RiskReason.ENTRY_AWAY_FROM_MARKET),
        ({"entry": 1.06, "stop": 1.05, "take_profit": 1.1}, RiskReason.ENTRY_AWAY_FROM_MARKET),
        ({"stop": None}, RiskReason.STOP_MISSING),
        ({"stop": float("inf")}, RiskReason.STOP_MISSING),
        ({"stop": 1.01}, RiskReason.STOP_WRONG_SIDE),
        ({"take_profit": 0.95}, RiskReason.TAKE_PROFIT_INVALID),
        ({"take_profit": None}, RiskReason.TAKE_PROFIT_INVALID),
        ({"invalidation": 1.05}, RiskReason.INVALIDATION_INVALID),
        ({"max_holding_s": -5.0}, RiskReason.MAX_HOLDING_INVALID),
        ({"size_fraction": float("nan")}, RiskReason.SIZE_INVALID),
        ({"size_fraction": -0.1}, RiskReason.SIZE_INVALID),
        ({"leverage": float("nan")}, RiskReason.LEVERAGE_INVALID),
        ({"leverage": 0.5}, RiskReason.LEVERAGE_INVALID),
        ({"symbol": "DOGE/USDT"}, RiskReason.UNKNOWN_SYMBOL),
    ],
)
def test_malformed_intents_are_rejected_with_their_reason(fields: dict, reason: RiskReason) -> None:
    check = _validate(RiskAgent(), _intent(**fields), _usdt(10_000.0))
    assert _rejected_for(check, reason)


def test_non_finite_market_is_rejected() -> None:
    check = _validate(RiskAgent(), _intent(), _half_xrp(), {**PRICES, "XRP/USDT": float("nan")})
    assert _rejected_for(check, RiskReason.INVALID_MARKET)


def test_requested_size_is_kept_when_smaller_and_capped_when_larger() -> None:
    agent = RiskAgent()
    small = _validate(agent, _intent(size_fraction=0.05), _usdt(10_000.0))
    assert small.approved and small.adjustments == ()
    assert small.quantity == pytest.approx(500.0 / 1.0005)
    huge = _validate(agent, _intent(size_fraction=1e12), _usdt(10_000.0))
    assert huge.approved and RiskAdjustment.SIZE_CAPPED_BY_POSITION_LIMIT in huge.adjustments
    assert huge.notional_usdt <= 2000.0


def test_btc_correlation_halves_the_size() -> None:
    agent = RiskAgent()
    base = _validate(agent, _intent(), _usdt(10_000.0))
    btc_like = MarketRisk(CALM.volatility, {**CALM.correlations, frozenset(("BTC/USDT", "XRP/USDT")): 0.85})
    reduced = _validate(agent, _intent(), _usdt(10_000.0), market=btc_like)
    assert RiskAdjustment.SIZE_REDUCED_BTC_CORRELATION in reduced.adjustments
    assert RiskAdjustment.SIZE_REDUCED_BTC_CORRELATION not in base.adjustments
    assert reduced.quantity == pytest.approx(0.5 * base.quantity)
    # Unknown correlation counts as correlated; BTC/USDT itself is never reduced.
    unknown = _validate(agent, _intent(), _usdt(10_000.0), market=MarketRisk())
    assert unknown.quantity == pytest.approx(reduced.quantity)
    btc = _validate(agent, _intent("BTC/USDT", entry=40_000.0, stop=39_600.0, take_profit=41_000.0),
                    _usdt(10_000.0), market=MarketRisk())
    assert RiskAdjustment.SIZE_REDUCED_BTC_CORRELATION not in btc.adjustments


def test_at_most_two_correlated_positions() -> None:
    agent = RiskAgent()
    portfolio = Portfolio("a", {Asset.USDT: 10_000.0, Asset.BTC: 1.0})
    held = (_position("BTC/USDT", quantity=0.01), _position("XRP/USDT"))
    correlated = MarketRisk(CALM.volatility, {frozenset(("XRP/BTC", "BTC/USDT")): 0.9,
                                              frozenset(("XRP/BTC", "XRP/USDT")): -0.75})
    signal = _intent("XRP/BTC", entry=2.5e-5, stop=2.48e-5, take_profit=2.6e-5)
    check = _validate(agent, signal, portfolio, positions=held, market=correlated)
    assert _rejected_for(check, RiskReason.TOO_MANY_CORRELATED)
    one_correlated = MarketRisk(CALM.volatility, {frozenset(("XRP/BTC", "BTC/USDT")): 0.9,
                                                  frozenset(("XRP/BTC", "XRP/USDT")): 0.1})
    assert _validate(agent, signal, portfolio, positions=held, market=one_correlated).approved
    assert _rejected_for(_validate(agent, signal, portfolio, positions=held, market=MarketRisk()),
                         RiskReason.TOO_MANY_CORRELATED)


def test_five_losses_start_a_thirty_minute_cooldown() -> None:
    agent = RiskAgent()
    for minute in range(4):
        agent.record_trade_result(DAY1 + timedelta(minutes=minute), -1.0)
    assert _validate(agent, _intent(), _usdt(10_000.0)).approved
    agent.record_trade_result(DAY1 + timedelta(minutes=4), -1.0)
    during = _validate(agent, _intent(), _usdt(10_000.0), now=DAY1 + timedelta(minutes=33))
    assert _rejected_for(during, RiskReason.LOSS_COOLDOWN)
    assert _validate(agent, _intent(), _usdt(10_000.0), now=DAY1 + timedelta(minutes=34)).approved
    # A win resets the streak.
    for minute, pnl in enumerate([-1.0, -1.0, -1.0, -1.0, 2.0, -1.0]):
        agent.record_trade_result(DAY1 + timedelta(minutes=40 + minute), pnl)
    assert _validate(agent, _intent(), _usdt(10_000.0), now=DAY1 + timedelta(minutes=46)).approved


def test_leverage_defaults_caps_and_reductions() -> None:
    agent = RiskAgent()
    portfolio = _usdt(10_000.0)
    assert _validate(agent, _intent(tested=True), portfolio).leverage == 1.5
    assert _validate(agent, _intent(action=IntentAction.SHORT, tested=True), portfolio).leverage == 2.0
    huge = _validate(agent, _intent(tested=True, leverage=1e9), portfolio)
    assert huge.approved and huge.leverage == 3.0
    assert RiskAdjustment.LEVERAGE_CAPPED in huge.adjustments
    untested = _validate(agent, _intent(tested=False, leverage=3.0), portfolio)
    assert untested.leverage == 1.0 and RiskAdjustment.LEVERAGE_REMOVED_UNTESTED in untested.adjustments
    wild = MarketRisk({**CALM.volatility, "XRP/USDT": 0.10}, CALM.correlations)
    volatile = _validate(agent, _intent(tested=True, leverage=3.0), portfolio, market=wild)
    assert volatile.leverage == pytest.approx(1.5)  # 3 * 0.05 / 0.10
    assert RiskAdjustment.LEVERAGE_REDUCED_VOLATILITY in volatile.adjustments
    unknown = _validate(agent, _intent(tested=True, leverage=3.0), portfolio, market=MarketRisk())
    assert unknown.leverage == 1.0


def test_leverage_lets_a_long_use_less_of_its_own_quote() -> None:
    agent = RiskAgent()
    portfolio = Portfolio("a", {Asset.USDT: 500.0, Asset.XRP: 9500.0})  # equity 10,000, little quote
    spot = _validate(agent, _intent(), portfolio)
    levered = _validate(agent, _intent(tested=True, leverage=3.0), portfolio)
    assert RiskAdjustment.SIZE_CAPPED_BY_BALANCE in spot.adjustments
    assert levered.quantity == pytest.approx(3 * spot.quantity, rel=0.01)
    assert levered.notional_usdt <= 2000.0


def test_leveraged_short_needs_no_inventory() -> None:
    agent = RiskAgent()
    no_xrp = _usdt(10_000.0)
    spot = _validate(agent, _intent(action=IntentAction.SHORT), no_xrp)
    assert _rejected_for(spot, RiskReason.INSUFFICIENT_BALANCE)
    levered = _validate(agent, _intent(action=IntentAction.SHORT, tested=True), no_xrp)
    assert levered.approved and levered.leverage == 2.0 and levered.notional_usdt <= 2000.0


def test_close_intent_is_allowed_only_with_a_position() -> None:
    agent = RiskAgent()
    agent.observe_equity(DAY1, 10_000.0)
    close = _intent(action=IntentAction.CLOSE, stop=None, take_profit=None)
    assert _rejected_for(_validate(agent, close, _usdt(10_000.0)), RiskReason.NOTHING_TO_CLOSE)
    held = _validate(agent, close, _usdt(5000.0), positions=(_position("XRP/USDT"),))
    assert held.approved and held.reasons == (RiskReason.EXIT_ALWAYS_ALLOWED,)
    assert held.position_id == "pos:XRP/USDT" and held.intent_id == "i1"


def test_estimate_market_risk_from_closes() -> None:
    import numpy as np

    rng = np.random.default_rng(3)
    common = rng.normal(0, 0.001, 200)
    own = rng.normal(0, 0.001, 200)
    def series(returns: np.ndarray, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
        closes = np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
        return np.arange(first, first + len(closes), dtype=np.int64) * 60_000_000, closes
    times, closes = series(own)
    estimate = estimate_market_risk({"BTC/USDT": series(common), "XRP/USDT": series(common + 0.1 * own),
                                     "XRP/BTC": (times[:10], closes[:10])})
    assert estimate.correlation("BTC/USDT", "XRP/USDT") > 0.95
    assert estimate.correlation("BTC/USDT", "XRP/BTC") is None  # too short to estimate
    assert estimate.volatility_of("BTC/USDT") == pytest.approx(np.std(common, ddof=1) * np.sqrt(1440), rel=1e-9)
    assert estimate.volatility_of("XRP/BTC") is None
    # Series over different minutes are correlated over the minutes they share only: the same
    # returns 100 minutes apart are unrelated there (by position they would be identical).
    shifted = estimate_market_risk({"BTC/USDT": series(common), "XRP/USDT": series(common, first=180)})
    assert shifted.correlation("BTC/USDT", "XRP/USDT") is None  # 20 shared returns: too few
    apart = estimate_market_risk({"BTC/USDT": series(common), "XRP/USDT": series(common, first=100)})
    correlation = apart.correlation("BTC/USDT", "XRP/USDT")
    assert correlation is not None and abs(correlation) < 0.3


# --- property: whatever the signal, portfolio and prices, an approved entry respects the limits


symbols = st.sampled_from(list(INSTRUMENTS))
directions = st.sampled_from(list(Direction))
fractions = st.floats(min_value=1e-4, max_value=0.03)


@st.composite
def markets(draw: st.DrawFn) -> dict[str, float]:
    btc = draw(st.floats(min_value=1e3, max_value=1e5))
    xrp = draw(st.floats(min_value=0.05, max_value=5.0))
    skew = draw(st.floats(min_value=0.97, max_value=1.03))  # the cross is never exactly consistent
    return {"BTC/USDT": btc, "XRP/USDT": xrp, "XRP/BTC": xrp / btc * skew}


@st.composite
def portfolios(draw: st.DrawFn) -> Portfolio:
    return Portfolio("a", {
        Asset.USDT: draw(st.floats(min_value=0.0, max_value=1e6)),
        Asset.XRP: draw(st.floats(min_value=0.0, max_value=1e6)),
        Asset.BTC: draw(st.floats(min_value=0.0, max_value=20.0)),
    })


def _enter(agent: RiskAgent, executor: PaperExecutor, signal: Signal, portfolio: Portfolio,
           prices: dict[str, float], positions: list[Position]) -> None:
    check = agent.validate(signal, portfolio, prices, positions, DAY1, check_id=f"chk:{signal.symbol}")
    if not check.approved:
        assert check.quantity == 0.0
        return
    equity = check.equity_usdt
    quote_usdt = 1.0 if INSTRUMENTS[signal.symbol].quote is Asset.USDT else prices["BTC/USDT"]
    side = Side.BUY if signal.direction is Direction.LONG else Side.SELL
    # Sized at the market, where the order fills; the signal's entry is only the order's limit.
    market_price = prices[signal.symbol]
    worst = executor.fill_model.worst_fill_price(side, market_price)
    assert check.quantity * worst * quote_usdt <= 0.20 * equity * (1 + 1e-9)
    assert check.quantity * abs(market_price - signal.stop_loss) * quote_usdt <= 0.01 * equity * (1 + 1e-9)
    order = Order(
        order_id=f"o:{signal.symbol}", account="a", time=DAY1, symbol=signal.symbol, side=side,
        quantity=check.quantity, purpose=OrderPurpose.ENTRY, check_id=check.check_id, position_id=signal.symbol,
        order_type=OrderType.LIMIT, time_in_force=TimeInForce.IOC, limit_price=check.limit_price,
    )
    try:
        fill = executor.execute(order, market_price, portfolio)  # raises if it exceeds the balances
    except UnfillableOrderError:
        # A stated entry better than the market: a limit the market does not reach fills nothing.
        assert (signal.entry < market_price) if side is Side.BUY else (signal.entry > market_price)
        return
    positions.append(Position(
        position_id=signal.symbol, account="a", symbol=signal.symbol, direction=signal.direction,
        quantity=fill.quantity, entry_price=fill.price, stop_loss=signal.stop_loss,
        take_profit=signal.take_profit, opened_at=DAY1, entry_notional_usdt=check.notional_usdt,
        equity_at_entry_usdt=equity, fees=fill.fee,
    ))


@settings(max_examples=300, deadline=None)
@given(
    portfolio=portfolios(), prices=markets(),
    picks=st.lists(st.tuples(symbols, directions, fractions, st.floats(0.9, 1.1)), min_size=1, max_size=3,
                   unique_by=lambda pick: pick[0]),
)
def test_approved_entries_respect_caps_and_balances_and_can_exit(
    portfolio: Portfolio, prices: dict[str, float], picks: list[tuple[str, Direction, float, float]]
) -> None:
    agent = RiskAgent(RiskLimits(), FEE, SLIP)
    executor = PaperExecutor(FEE, SLIP)
    positions: list[Position] = []
    for symbol, direction, stop_fraction, moved in picks:
        signal = _signal(symbol, direction, entry=prices[symbol] * moved, stop_fraction=stop_fraction)
        _enter(agent, executor, signal, portfolio, prices, positions)
    # Every open position can still be closed at its stop: exits never fail for want of balance.
    for position in positions:
        exit_side = Side.SELL if position.direction is Direction.LONG else Side.BUY
        order = Order(
            order_id=f"x:{position.symbol}", account="a", time=DAY1, symbol=position.symbol, side=exit_side,
            quantity=position.quantity, purpose=OrderPurpose.STOP_LOSS, check_id="x", position_id=position.position_id,
        )
        executor.execute(order, position.stop_loss, portfolio)


def test_an_intent_needs_an_aware_time_and_accepts_a_technical_signal() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        TradeIntent(intent_id="i", strategy="s", symbol="XRP/USDT", time=datetime(2024, 1, 1),
                    action=IntentAction.LONG, entry=1.0)
    intent = _signal().to_trade_intent(source="technical", tested=True)
    assert (intent.intent_id, intent.signal_id, intent.action, intent.tested) == (
        "sig:XRP/USDT", "sig:XRP/USDT", IntentAction.LONG, True)
    assert intent.stop_loss == pytest.approx(0.99) and intent.take_profit == pytest.approx(1.02)
