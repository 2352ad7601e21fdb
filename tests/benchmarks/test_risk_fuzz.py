"""BENCH risk_fuzz_decisions / risk_fuzz_violations: 100,000 random decisions through the RiskAgent.

A seeded random stream of intents (15% of each field adversarial: NaN, inf, negative,
huge, wrong side), market contexts, price moves, closes at the stop and trade results drives
one paper account; every verdict is re-checked by the independent checker of
tests/support/risk_checker.py (one checker, two drivers).
"""

from __future__ import annotations

import math
import random
from datetime import timedelta

from tests.support import risk_checker as checker_module
from triplegain_core.model.market import Asset
from triplegain_core.model.signals import IntentAction, TradeIntent
from triplegain_core.portfolio.balances import Portfolio
from triplegain_core.risk.rules import MarketRisk, RiskAgent, RiskLimits

DECISIONS = 100_000
SEED = 20240301
ADVERSARIAL = [float("nan"), float("inf"), float("-inf"), 0.0, -1.0, -1e12, 1e308, 1e-300]



def _mostly(rng: random.Random, clean: object, dirty_choices: list) -> object:
    return rng.choice(dirty_choices) if rng.random() < 0.15 else clean


def _intent(rng: random.Random, n: int, prices: dict[str, float], now) -> TradeIntent:
    symbol = _mostly(rng, rng.choice(checker_module.SYMBOLS), ["DOGE/USDT"])
    price = prices.get(symbol, 1.0)
    action = rng.choice([IntentAction.LONG, IntentAction.SHORT, IntentAction.LONG, IntentAction.CLOSE])
    sign = -1.0 if action is IntentAction.SHORT else 1.0
    entry = _mostly(rng, price * (1 + rng.uniform(-0.005, 0.005)), ADVERSARIAL)
    base = entry if math.isfinite(entry) and entry > 0 else price
    return TradeIntent(
        intent_id=f"i{n}", strategy="fuzz", tested=rng.random() < 0.5, symbol=symbol, time=now, action=action,
        entry=entry,
        stop_loss=_mostly(rng, base * (1 - sign * rng.uniform(-0.005, 0.03)), [None, *ADVERSARIAL]),
        take_profit=_mostly(rng, base * (1 + sign * rng.uniform(0.001, 0.06)), [None, *ADVERSARIAL]),
        size_fraction=_mostly(rng, rng.choice([None, rng.uniform(0.001, 1.0)]), [*ADVERSARIAL, 1e9]),
        leverage=_mostly(rng, rng.choice([None, rng.uniform(1.0, 10.0)]), [*ADVERSARIAL, 1e6, 0.5]),
        invalidation=_mostly(rng, None, ADVERSARIAL),
        max_holding_s=_mostly(rng, rng.choice([None, rng.uniform(1.0, 1e6)]), ADVERSARIAL),
    )


def _market(rng: random.Random) -> MarketRisk:
    pairs = [frozenset(p) for p in (("BTC/USDT", "XRP/USDT"), ("BTC/USDT", "XRP/BTC"), ("XRP/USDT", "XRP/BTC"))]
    correlations = {}
    for pair in pairs:
        value = _mostly(rng, rng.uniform(-1.0, 1.0), [None, float("nan")])
        if value is not None:
            correlations[pair] = value
    volatility = {}
    for symbol in checker_module.SYMBOLS:
        value = _mostly(rng, rng.uniform(0.0, 0.2), [None, float("inf")])
        if value is not None:
            volatility[symbol] = value
    return MarketRisk(volatility, correlations)


def test_risk_fuzz() -> None:
    rng = random.Random(SEED)
    limits = RiskLimits()
    accounts = 0
    decisions = fills = 0
    violations: list[str] = []
    while decisions < DECISIONS:
        # A fresh account every 200 decisions, so pauses and cooldowns come and go.
        accounts += 1
        portfolio = Portfolio("a", {Asset.USDT: rng.uniform(0, 1e5), Asset.XRP: rng.uniform(0, 1e5),
                                    Asset.BTC: rng.uniform(0, 2)})
        account = checker_module.Account(
            RiskAgent(limits, checker_module.FEE, checker_module.SLIP), checker_module.Checker(limits), portfolio
        )
        btc, xrp, now = rng.uniform(1e4, 1e5), rng.uniform(0.1, 3.0), checker_module.START
        while account.decisions < 200:
            prices = {"BTC/USDT": btc, "XRP/USDT": xrp, "XRP/BTC": xrp / btc * rng.uniform(0.97, 1.03)}
            roll = rng.random()
            if roll < 0.8:
                account.decide(_intent(rng, account.decisions, prices, now), prices, _market(rng), now)
            elif roll < 0.88:
                account.close_oldest_at_stop(now)
            elif roll < 0.94:
                for _ in range(rng.randint(1, 6)):  # runs of results, so cooldowns do start
                    pnl = rng.uniform(-10.0, 1.0)
                    account.agent.record_trade_result(now, pnl)
                    account.checker.trade_result(now, pnl)
            else:
                btc *= rng.uniform(0.8, 1.1)
                xrp *= rng.uniform(0.8, 1.1)
            now += timedelta(minutes=rng.randint(0, 120))
        decisions += account.decisions
        fills += account.fills
        violations.extend(account.checker.violations)
        if accounts % 100 == 0:
            print(f"risk fuzz: {decisions}/{DECISIONS} decisions, {fills} fills, {len(violations)} violations",
                  flush=True)
    print(f"BENCH risk_fuzz_decisions {decisions} decisions")
    print(f"BENCH risk_fuzz_violations {len(violations)} violations")
    print(f"BENCH risk_fuzz_fills {fills} fills")
    assert fills > 0, "the stream must trade for the count of violations to mean anything"
    assert violations == [], violations[:5]
