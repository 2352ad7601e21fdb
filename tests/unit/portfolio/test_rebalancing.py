"""RebalancingAgent: triggers, hand-computed trades and allocations, reserves, triangular cycles."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from triplegain_core.model.market import Asset, Side
from triplegain_core.portfolio.balances import MissingPriceError
from triplegain_core.portfolio.rebalancing import (
    Quote,
    RebalanceConfig,
    RebalancePlan,
    RebalanceTrigger,
    RebalancingAgent,
    TriggerHit,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PRICES = {"BTC/USDT": 50_000.0, "XRP/USDT": 0.5, "XRP/BTC": 0.00001}
NO_FEES = {"BTC/USDT": 0.0, "XRP/USDT": 0.0, "XRP/BTC": 0.0}


def _kinds(found: RebalancePlan | tuple[TriggerHit, ...]) -> set[tuple[RebalanceTrigger, Asset | None]]:
    hits = found.triggers if isinstance(found, RebalancePlan) else found
    return {(hit.trigger, hit.asset) for hit in hits}


def test_all_usdt_is_split_into_thirds_without_fees() -> None:
    agent = RebalancingAgent(RebalanceConfig(fee_rates=NO_FEES))
    plan = agent.evaluate({Asset.USDT: 900.0}, PRICES, NOW)
    assert _kinds(plan) == {
        (RebalanceTrigger.DRIFT, Asset.USDT), (RebalanceTrigger.DRIFT, Asset.BTC), (RebalanceTrigger.DRIFT, Asset.XRP),
        (RebalanceTrigger.CONCENTRATION, Asset.USDT),
    }
    assert plan.before == {Asset.USDT: 1.0, Asset.BTC: 0.0, Asset.XRP: 0.0}
    by_symbol = {trade.symbol: trade for trade in plan.trades}
    assert set(by_symbol) == {"BTC/USDT", "XRP/USDT"}
    # 300 USDT into each: 300 / 50,000 = 0.006 BTC and 300 / 0.5 = 600 XRP.
    assert by_symbol["BTC/USDT"].side is Side.BUY and by_symbol["BTC/USDT"].quantity == pytest.approx(0.006)
    assert by_symbol["XRP/USDT"].side is Side.BUY and by_symbol["XRP/USDT"].quantity == pytest.approx(600.0)
    for share in plan.after.values():
        assert share == pytest.approx(1 / 3)
    assert plan.equity_after_usdt == pytest.approx(900.0)
    assert plan.fees_usdt == 0.0
    assert plan.needed


def test_fees_are_paid_from_what_is_spent() -> None:
    agent = RebalancingAgent(RebalanceConfig())  # 0.1% on every pair
    plan = agent.evaluate({Asset.USDT: 900.0}, PRICES, NOW)
    btc = next(t for t in plan.trades if t.symbol == "BTC/USDT")
    # 300 USDT buys 300 / (50,000 * 1.001) BTC; the fee is 0.1% of the notional, in USDT.
    assert btc.quantity == pytest.approx(300.0 / 50_050.0)
    assert btc.fee == pytest.approx(0.001 * btc.quantity * 50_000.0)
    assert plan.fees_usdt == pytest.approx(2 * 300.0 * 0.001 / 1.001)
    assert plan.equity_after_usdt == pytest.approx(900.0 - plan.fees_usdt)
    # USDT keeps exactly 300; BTC and XRP are worth 300 / 1.001 each.
    equity = plan.equity_after_usdt
    assert plan.after[Asset.USDT] == pytest.approx(300.0 / equity)
    assert plan.after[Asset.BTC] == pytest.approx((300.0 / 1.001) / equity)


def test_btc_heavy_portfolio_sells_btc_into_both_others() -> None:
    # BTC 0.014 = 700 USDT, XRP 400 = 200 USDT, USDT 100: equity 1000, target 333.33 each.
    agent = RebalancingAgent(RebalanceConfig(fee_rates=NO_FEES))
    balances = {Asset.BTC: 0.014, Asset.XRP: 400.0, Asset.USDT: 100.0}
    plan = agent.evaluate(balances, PRICES, NOW)
    assert plan.before[Asset.BTC] == pytest.approx(0.7)
    assert (RebalanceTrigger.CONCENTRATION, Asset.BTC) in _kinds(plan)
    by_symbol = {trade.symbol: trade for trade in plan.trades}
    assert set(by_symbol) == {"BTC/USDT", "XRP/BTC"}
    # USDT needs 233.33 (the larger need, matched first), XRP 133.33; both come out of BTC.
    assert by_symbol["BTC/USDT"].side is Side.SELL
    assert by_symbol["BTC/USDT"].quantity == pytest.approx((1000 / 3 - 100) / 50_000.0)
    assert by_symbol["XRP/BTC"].side is Side.BUY and by_symbol["XRP/BTC"].sells is Asset.BTC
    assert by_symbol["XRP/BTC"].quantity == pytest.approx((1000 / 3 - 200) / 0.5)
    for share in plan.after.values():
        assert share == pytest.approx(1 / 3)


def test_minimum_reserve_is_kept_and_the_rest_shared() -> None:
    config = RebalanceConfig(fee_rates=NO_FEES, min_reserve={Asset.USDT: 500.0})
    agent = RebalancingAgent(config)
    # Equity 1000: USDT must keep 500; BTC and XRP give up the 166.67 excess equally -> 250 each.
    assert agent.target_values({Asset.USDT: 1000.0}, PRICES) == pytest.approx(
        {Asset.USDT: 500.0, Asset.BTC: 250.0, Asset.XRP: 250.0})
    plan = agent.evaluate({Asset.USDT: 1000.0}, PRICES, NOW)
    assert plan.after == pytest.approx({Asset.USDT: 0.5, Asset.BTC: 0.25, Asset.XRP: 0.25})
    # All-XRP portfolio with an XRP reserve of 1,400 (700 USDT): XRP never sold below it.
    config = RebalanceConfig(fee_rates=NO_FEES, min_reserve={Asset.XRP: 1400.0})
    plan = RebalancingAgent(config).evaluate({Asset.XRP: 2000.0}, PRICES, NOW)
    xrp_sold = sum(t.quantity for t in plan.trades if t.sells is Asset.XRP)
    assert 2000.0 - xrp_sold == pytest.approx(1400.0)


def test_reserves_above_equity_are_an_error() -> None:
    agent = RebalancingAgent(RebalanceConfig(min_reserve={Asset.USDT: 2000.0}))
    with pytest.raises(ValueError, match="exceed the equity"):
        agent.evaluate({Asset.USDT: 1000.0}, PRICES, NOW)


def test_balanced_portfolio_within_thresholds_has_no_trigger_and_no_trade() -> None:
    agent = RebalancingAgent()
    # 40% / 30% / 30%: drift 6.7 points, under 10.
    balances = {Asset.USDT: 400.0, Asset.BTC: 0.006, Asset.XRP: 600.0}
    plan = agent.evaluate(balances, PRICES, NOW)
    assert plan.triggers == () and plan.trades == () and not plan.needed
    assert plan.after == plan.before


def test_drift_threshold_is_strict_and_absolute() -> None:
    agent = RebalancingAgent(RebalanceConfig(fee_rates=NO_FEES))
    # USDT 45%, BTC 25%, XRP 30% of 1000: USDT drifts 11.7 points, BTC 8.3, XRP 3.3.
    hits = agent.triggers({Asset.USDT: 450.0, Asset.BTC: 0.005, Asset.XRP: 600.0}, PRICES)
    assert _kinds(hits) == {(RebalanceTrigger.DRIFT, Asset.USDT)}
    assert hits[0].value == pytest.approx(0.45 - 1 / 3)


def test_concentration_over_sixty_percent() -> None:
    target = {Asset.USDT: 0.6, Asset.BTC: 0.2, Asset.XRP: 0.2}
    agent = RebalancingAgent(RebalanceConfig(target=target, drift_threshold=0.5))
    assert agent.triggers({Asset.USDT: 600.0, Asset.BTC: 0.004, Asset.XRP: 400.0}, PRICES) == ()
    hits = agent.triggers({Asset.USDT: 610.0, Asset.BTC: 0.004, Asset.XRP: 380.0}, PRICES)
    assert _kinds(hits) == {(RebalanceTrigger.CONCENTRATION, Asset.USDT)}


def test_gain_over_twenty_percent_since_reference() -> None:
    agent = RebalancingAgent()
    balances = {Asset.USDT: 1000.0 / 3, Asset.BTC: 1000.0 / 3 / 50_000.0, Asset.XRP: 1000.0 / 3 / 0.5}
    reference = {"BTC/USDT": 50_000.0 / 1.25, "XRP/USDT": 0.5 / 1.19}
    hits = agent.triggers(balances, PRICES, reference_prices=reference)
    assert _kinds(hits) == {(RebalanceTrigger.GAIN, Asset.BTC)}
    assert hits[0].value == pytest.approx(0.25)


def test_regime_change_triggers_only_on_a_change() -> None:
    agent = RebalancingAgent()
    balances = {Asset.USDT: 1000.0 / 3, Asset.BTC: 1000.0 / 3 / 50_000.0, Asset.XRP: 1000.0 / 3 / 0.5}
    assert agent.triggers(balances, PRICES, regime="trending_up", previous_regime="trending_up") == ()
    assert agent.triggers(balances, PRICES, regime="trending_up") == ()
    plan = agent.evaluate(balances, PRICES, NOW, regime="volatile", previous_regime="trending_up")
    assert _kinds(plan) == {(RebalanceTrigger.REGIME_CHANGE, None)}
    # Already on target: the trigger is reported, the trades are below the minimum size.
    assert plan.trades == ()


def test_missing_price_is_a_clear_error() -> None:
    agent = RebalancingAgent()
    with pytest.raises(MissingPriceError):
        agent.evaluate({Asset.BTC: 1.0}, {"XRP/USDT": 0.5}, NOW)


@pytest.mark.parametrize("target", [
    {Asset.USDT: 0.5, Asset.BTC: 0.5},
    {Asset.USDT: 0.5, Asset.BTC: 0.3, Asset.XRP: 0.3},
    {Asset.USDT: 1.2, Asset.BTC: -0.1, Asset.XRP: -0.1},
])
def test_invalid_targets_are_rejected(target: dict[Asset, float]) -> None:
    with pytest.raises(ValidationError):
        RebalanceConfig(target=target)


# A cycle worth +0.3% before fees: USDT -> BTC at 50,000 -> XRP at 0.00001 BTC -> USDT at 0.5015.
EDGE_QUOTES = {
    "BTC/USDT": Quote(symbol="BTC/USDT", bid=49_990.0, ask=50_000.0),
    "XRP/BTC": Quote(symbol="XRP/BTC", bid=0.0000099, ask=0.00001),
    "XRP/USDT": Quote(symbol="XRP/USDT", bid=0.5015, ask=0.5016),
}


def test_triangular_cycle_profitable_only_before_fees() -> None:
    with_fees = RebalancingAgent(RebalanceConfig())  # 0.1% per leg
    forward, backward = with_fees.triangular(EDGE_QUOTES)
    assert forward.path == (Asset.USDT, Asset.BTC, Asset.XRP, Asset.USDT)
    assert [(leg.symbol, leg.side, leg.price) for leg in forward.legs] == [
        ("BTC/USDT", Side.BUY, 50_000.0), ("XRP/BTC", Side.BUY, 0.00001), ("XRP/USDT", Side.SELL, 0.5015)]
    assert forward.gross_return == pytest.approx(0.003)
    assert forward.net_return == pytest.approx(1.003 * 0.999**3 - 1.0)
    assert forward.net_return < 0.0 and not forward.profitable
    # The reverse: 1 / 0.5016 XRP -> * 0.0000099 BTC -> * 49,990 USDT = 0.98664, a loss either way.
    assert backward.path == (Asset.USDT, Asset.XRP, Asset.BTC, Asset.USDT)
    assert backward.gross_return == pytest.approx(0.0000099 * 49_990.0 / 0.5016 - 1.0)
    assert not backward.profitable
    balanced = {Asset.USDT: 1000.0 / 3, Asset.BTC: 1000.0 / 3 / 50_000.0, Asset.XRP: 1000.0 / 3 / 0.5}
    assert with_fees.evaluate(balanced, PRICES, NOW, quotes=EDGE_QUOTES).arbitrage == ()

    no_fees = RebalancingAgent(RebalanceConfig(fee_rates=NO_FEES))
    forward, backward = no_fees.triangular(EDGE_QUOTES)
    assert forward.profitable and forward.net_return == pytest.approx(0.003)
    assert not backward.profitable
    plan = no_fees.evaluate(balanced, PRICES, NOW, quotes=EDGE_QUOTES)
    assert plan.arbitrage == (forward,) and plan.needed and plan.trades == ()


def test_fee_rate_is_applied_per_leg() -> None:
    fees = {"BTC/USDT": 0.0, "XRP/BTC": 0.002, "XRP/USDT": 0.0}
    forward, _ = RebalancingAgent(RebalanceConfig(fee_rates=fees)).triangular(EDGE_QUOTES)
    assert forward.net_return == pytest.approx(1.003 * 0.998 - 1.0)
    assert forward.profitable  # +0.0994%: only the cross leg pays


def test_reverse_direction_detected() -> None:
    quotes = {
        "BTC/USDT": Quote(symbol="BTC/USDT", bid=50_000.0, ask=50_010.0),
        "XRP/BTC": Quote(symbol="XRP/BTC", bid=0.0000102, ask=0.0000103),
        "XRP/USDT": Quote(symbol="XRP/USDT", bid=0.4999, ask=0.5),
    }
    forward, backward = RebalancingAgent(RebalanceConfig()).triangular(quotes)
    # 1 / 0.5 XRP = 2 XRP -> 0.0000204 BTC -> 1.02 USDT; net of three 0.1% fees.
    assert backward.gross_return == pytest.approx(0.02)
    assert backward.net_return == pytest.approx(1.02 * 0.999**3 - 1.0)
    assert backward.profitable and not forward.profitable


def test_triangular_needs_all_three_quotes() -> None:
    with pytest.raises(MissingPriceError):
        RebalancingAgent().triangular({"BTC/USDT": EDGE_QUOTES["BTC/USDT"]})
    with pytest.raises(ValidationError):
        Quote(symbol="XRP/USDT", bid=0.6, ask=0.5)
