"""Ratio trading (XRP/BTC): the XRP/BTC ratio reverting to its rolling mean.

On log prices, z = (x - mean) / std over the last ``lookback`` candles. LONG (XRP cheap
against BTC) on the candle where z first falls to ``-z_entry`` or below, SHORT where it first
rises to ``z_entry``; the take-profit is the mean ratio. While it holds an intent, |z| back
under ``z_exit`` CLOSEs it. When the snapshot has both USDT pairs on the same timeframe, the
ratio their last closes imply is recorded beside the traded one.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.levels import BracketConfig, candle_signal, clip01, close_signal

NAME = "ratio_trading"
VERSION = "1.0.0"
SYMBOLS = ("XRP/BTC",)
READS = frozenset({"candles"})


class Config(BracketConfig):
    """Look-back and z-score thresholds."""

    timeframe: str = "5m"
    lookback: int = Field(default=96, ge=10)
    z_entry: float = Field(default=2.0, gt=0.0)
    z_exit: float = Field(default=0.5, ge=0.0)
    stop_std: float = Field(default=1.5, gt=0.0)


def _zscores(log_close: np.ndarray, lookback: int) -> tuple[float, float, float, float]:
    """(z now, z one candle earlier, mean, std) over windows ending at each of the two candles."""
    now = log_close[-lookback:]
    prev = log_close[-lookback - 1 : -1]
    mean, std = float(now.mean()), float(now.std())
    prev_std = float(prev.std())
    if std <= 0.0 or prev_std <= 0.0:
        return math.nan, math.nan, mean, std
    return (float(now[-1]) - mean) / std, (float(prev[-1]) - float(prev.mean())) / prev_std, mean, std


def generate_signal(snapshot: MarketSnapshot, config: Config, state: StrategyState) -> Signal | None:
    """LONG/SHORT when the ratio's z-score first crosses the entry band; CLOSE back near the mean."""
    window = snapshot.window(state.symbol, config.timeframe)
    if window is None or len(window) < config.lookback + 1:
        return None
    window = window.tail(config.lookback + 1)
    z, z_prev, mean, std = _zscores(np.log(window.close), config.lookback)
    if math.isnan(z):
        return None
    values = {"z": z, "z_prev": z_prev, "mean_ratio": math.exp(mean), "log_std": std}
    usdt_xrp = snapshot.window("XRP/USDT", config.timeframe)
    usdt_btc = snapshot.window("BTC/USDT", config.timeframe)
    if usdt_xrp is not None and usdt_btc is not None and len(usdt_xrp) and len(usdt_btc):
        values["implied_ratio"] = float(usdt_xrp.close[-1]) / float(usdt_btc.close[-1])
    if state.open_action is not None and abs(z) <= config.z_exit:
        return close_signal(strategy=NAME, version=VERSION, window=window,
                            reason=f"ratio back near its mean (z {z:+.2f})", indicators=values)
    if z <= -config.z_entry < z_prev:
        action = SignalAction.LONG
    elif z >= config.z_entry > z_prev:
        action = SignalAction.SHORT
    else:
        return None
    entry = float(window.close[-1])
    return candle_signal(
        strategy=NAME,
        version=VERSION,
        window=window,
        action=action,
        strength=clip01((abs(z) - config.z_entry) / config.z_entry + 0.5),
        stop_distance=entry * (math.exp(config.stop_std * std) - 1.0),
        config=config,
        reason=f"XRP/BTC ratio z-score {z:+.2f} beyond {config.z_entry}",
        indicators=values,
        take_profit=math.exp(mean),
    )
