"""Property: whatever stream of intents, prices, fills and trade results the RiskAgent sees
(NaN, inf, negative values, stops on the wrong side, huge leverage and size included), no
approved entry breaks a limit. The limits are re-derived here, independently of the agent,
by a checker that follows the same stream.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.risk_checker import FEE, SLIP, START, SYMBOLS, Account, Checker
from triplegain_core.model.market import Asset
from triplegain_core.model.signals import IntentAction, TradeIntent
from triplegain_core.portfolio.balances import Portfolio
from triplegain_core.risk.rules import MarketRisk, RiskAgent, RiskLimits

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
    calm = MarketRisk(dict.fromkeys(SYMBOLS, 0.01), {})
    for n, symbol in enumerate(["BTC/USDT", "XRP/USDT"]):
        price = {"BTC/USDT": 40_000.0, "XRP/USDT": 1.0}[symbol]
        intent = TradeIntent(intent_id=f"i{n}", strategy="s", tested=True, symbol=symbol, time=START,
                             action=IntentAction.LONG, entry=price, stop_loss=price * 0.99, take_profit=price * 1.02)
        account.decide(intent, {"BTC/USDT": 40_000.0, "XRP/USDT": 1.0, "XRP/BTC": 2.5e-5}, calm, START)
    assert account.fills == 2 and account.checker.violations == []
