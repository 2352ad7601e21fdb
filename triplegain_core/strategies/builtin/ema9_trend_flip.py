"""EMA-9 trend flip (1h): the close crossing its 9-period EMA flips the trend.

LONG on the candle whose close moves from at-or-below the EMA to above it; SHORT on the
opposite cross. The EMA itself is the invalidation level.
"""

from __future__ import annotations

import math

import talib
from pydantic import Field

from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.model.market import TRADED_SYMBOLS
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.levels import BracketConfig, candle_signal, clip01

NAME = "ema9_trend_flip"
VERSION = "1.0.0"
SYMBOLS = TRADED_SYMBOLS
READS = frozenset({"candles"})


class Config(BracketConfig):
    """EMA and ATR periods on the 1h timeframe."""

    timeframe: str = "1h"
    window: int = Field(default=100, ge=20)
    ema_period: int = Field(default=9, ge=2)
    atr_period: int = Field(default=14, ge=2)
    stop_atr_multiple: float = Field(default=1.5, gt=0.0)


def generate_signal(snapshot: MarketSnapshot, config: Config, state: StrategyState) -> Signal | None:
    """LONG/SHORT on the candle where the close crosses the EMA."""
    window = snapshot.window(state.symbol, config.timeframe)
    if window is None or len(window) < max(config.ema_period, config.atr_period) + 2:
        return None
    window = window.tail(config.window)
    close = window.close
    ema = talib.EMA(close, timeperiod=config.ema_period)
    atr = float(talib.ATR(window.high, window.low, close, timeperiod=config.atr_period)[-1])
    ema_now, ema_prev = float(ema[-1]), float(ema[-2])
    if math.isnan(ema_prev) or math.isnan(atr) or atr <= 0.0:
        return None
    now, prev = float(close[-1]), float(close[-2])
    if prev <= ema_prev and now > ema_now:
        action = SignalAction.LONG
    elif prev >= ema_prev and now < ema_now:
        action = SignalAction.SHORT
    else:
        return None
    return candle_signal(
        strategy=NAME,
        version=VERSION,
        window=window,
        action=action,
        strength=clip01(abs(now - ema_now) / atr),
        stop_distance=config.stop_atr_multiple * atr,
        config=config,
        reason=f"close {now:.6g} crossed EMA{config.ema_period} {ema_now:.6g} ({action})",
        indicators={"ema": ema_now, "ema_prev": ema_prev, "atr": atr},
        invalidation=ema_now,
    )
