"""Baselines beside every backtest: what doing (almost) nothing would have earned.

Each baseline is valued in USDT at every moment of the history (the same minutes the kernel's
accounts are snapshotted at), from the candles' closes, starting from the configured starting
balances:

- ``hold``: the starting portfolio, untouched;
- ``buy_and_hold:<ASSET>``: everything converted into one asset at the first closes, then held;
- ``equal_weight``: the assets in equal parts, rebalanced whenever one weight drifts more than
  :data:`DRIFT` from its share.

Every conversion pays the configured fee and slippage on the value it moves (a trade between two
non-USDT assets is counted once, as if a direct pair existed). An asset is valued through its
USDT pair, else through XRP/BTC and BTC/USDT; a baseline needing an asset the history cannot
value is left out. The TechnicalAgent alone is the kernel's base account, run with the rest.
"""

from __future__ import annotations

from array import array

import numpy as np

from triplegain_core.backtest.engine import AccountKind, AccountResult
from triplegain_core.backtest.history import BacktestHistory
from triplegain_core.backtest.trail import AccountTrail, EquityCurve
from triplegain_core.config import Settings
from triplegain_core.model.market import INSTRUMENTS, Asset

# How far one asset's weight may drift from its equal share before the portfolio is rebalanced.
DRIFT = 0.05


def baseline_accounts(settings: Settings, history: BacktestHistory) -> tuple[AccountResult, ...]:
    """Every baseline the history can value (see the module's docstring)."""
    times, prices = _usdt_prices(history)
    balances = {asset: amount for asset, amount in settings.starting_balances.items() if amount}
    if any(asset not in prices for asset in balances):
        return ()  # the starting portfolio itself cannot be valued
    cost = settings.fee_rate + settings.slippage
    held = np.zeros(len(times))
    for asset, amount in balances.items():
        held += amount * prices[asset]
    results = [_result("hold", times, held)]
    for asset in sorted(prices):
        results.append(_result(f"buy_and_hold:{asset.value}", times, _buy_and_hold(asset, balances, prices, cost)))
    if len(prices) > 1:
        results.append(_result("equal_weight", times, _equal_weight(balances, prices, cost)))
    return tuple(results)


def _usdt_prices(history: BacktestHistory) -> tuple[np.ndarray, dict[Asset, np.ndarray]]:
    """The moments (close times) and each valuable asset's USDT price at each, forward-filled."""
    times = np.array(sorted({c.close_time_us for c in history.candles}), dtype=np.int64)
    index = {t: i for i, t in enumerate(times.tolist())}
    closes: dict[str, np.ndarray] = {}
    for symbol in history.symbols:
        series = np.full(len(times), np.nan)
        for candle in history.candles:
            if candle.symbol == symbol:
                series[index[candle.close_time_us]] = candle.close
        closes[symbol] = _forward_filled(series)
    prices: dict[Asset, np.ndarray] = {Asset.USDT: np.ones(len(times))}
    for symbol, series in closes.items():
        if INSTRUMENTS[symbol].quote is Asset.USDT:
            prices[INSTRUMENTS[symbol].base] = series
    if Asset.XRP not in prices and "XRP/BTC" in closes and Asset.BTC in prices:
        prices[Asset.XRP] = closes["XRP/BTC"] * prices[Asset.BTC]
    # Before a pair's first candle it has no price: value from the first moment every asset has one.
    first = max(int(np.argmax(~np.isnan(series))) for series in prices.values())
    return times[first:], {asset: series[first:] for asset, series in prices.items()}


def _forward_filled(series: np.ndarray) -> np.ndarray:
    known = np.where(~np.isnan(series), np.arange(len(series)), 0)
    return series[np.maximum.accumulate(known)]


def _buy_and_hold(asset: Asset, balances: dict[Asset, float], prices: dict[Asset, np.ndarray],
                  cost: float) -> np.ndarray:
    kept = balances.get(asset, 0.0) * prices[asset][0]
    moved = sum(amount * prices[other][0] for other, amount in balances.items() if other is not asset)
    quantity = float((kept + moved * (1 - cost)) / prices[asset][0])
    equity = np.asarray(quantity * prices[asset], dtype=float)
    equity[0] = kept + moved  # the starting value: the conversion's cost shows from the first move
    return equity


def _equal_weight(balances: dict[Asset, float], prices: dict[Asset, np.ndarray], cost: float) -> np.ndarray:
    assets = sorted(prices)
    matrix = np.column_stack([prices[a] for a in assets])
    share = 1.0 / len(assets)
    holdings = np.array([balances.get(a, 0.0) for a in assets])
    equity = np.empty(len(matrix))
    for row, at in enumerate(matrix):
        values = holdings * at
        total = float(values.sum())
        equity[row] = total
        if row == 0 or np.abs(values / total - share).max() > DRIFT:
            target = total * share
            usdt = assets.index(Asset.USDT) if Asset.USDT in assets else None
            moved = sum(abs(target - v) for i, v in enumerate(values) if i != usdt)
            holdings = (total - moved * cost) * share / at
    return equity


def _result(name: str, times: np.ndarray, equity: np.ndarray) -> AccountResult:
    curve = EquityCurve(array("q", times.tolist()), array("d", np.asarray(equity, dtype=float).tolist()))
    return AccountResult(name, AccountKind.BASELINE, AccountTrail(curve=curve))
