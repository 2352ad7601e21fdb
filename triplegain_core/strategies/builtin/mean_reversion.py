"""Mean reversion (5m): a close outside the Bollinger band with RSI stretched snaps back.

LONG on the candle that first closes below the lower band (20, 2) with RSI(14) under
``rsi_low``; SHORT mirrored above the upper band. The take-profit is the middle band. While the
strategy holds an intent, a close back across the middle band CLOSEs it.
"""

from __future__ import annotations

import math

import talib
from pydantic import Field

from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.model.market import TRADED_SYMBOLS
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.levels import BracketConfig, candle_signal, clip01, close_signal

NAME = "mean_reversion"
VERSION = "1.0.0"
SYMBOLS = TRADED_SYMBOLS
READS = frozenset({"candles"})


class Config(BracketConfig):
    """Band, RSI and ATR settings on the 5m timeframe."""

    timeframe: str = "5m"
    window: int = Field(default=100, ge=40)
    band_period: int = Field(default=20, ge=5)
    band_width: float = Field(default=2.0, gt=0.0)
    rsi_period: int = Field(default=14, ge=2)
    rsi_low: float = Field(default=30.0, gt=0.0, lt=50.0)
    rsi_high: float = Field(default=70.0, gt=50.0, lt=100.0)
    stop_atr_multiple: float = Field(default=1.5, gt=0.0)


def generate_signal(snapshot: MarketSnapshot, config: Config, state: StrategyState) -> Signal | None:
    """LONG/SHORT on the first stretched close outside the bands; CLOSE back at the middle."""
    window = snapshot.window(state.symbol, config.timeframe)
    if window is None or len(window) < max(config.band_period, config.rsi_period) + 16:
        return None
    window = window.tail(config.window)
    close = window.close
    upper, middle, lower = talib.BBANDS(close, timeperiod=config.band_period, nbdevup=config.band_width,
                                        nbdevdn=config.band_width)
    rsi = talib.RSI(close, timeperiod=config.rsi_period)
    atr = float(talib.ATR(window.high, window.low, close, timeperiod=14)[-1])
    if math.isnan(lower[-2]) or math.isnan(rsi[-2]) or math.isnan(atr) or atr <= 0.0:
        return None
    now, prev = float(close[-1]), float(close[-2])
    values = {"bb_upper": float(upper[-1]), "bb_middle": float(middle[-1]), "bb_lower": float(lower[-1]),
              "rsi": float(rsi[-1]), "atr": atr}
    if (state.open_action is SignalAction.LONG and now >= values["bb_middle"]) or (
        state.open_action is SignalAction.SHORT and now <= values["bb_middle"]
    ):
        return close_signal(strategy=NAME, version=VERSION, window=window,
                            reason=f"close {now:.6g} back at the middle band {values['bb_middle']:.6g}",
                            indicators=values)
    stretched_low = now < lower[-1] and rsi[-1] < config.rsi_low
    stretched_high = now > upper[-1] and rsi[-1] > config.rsi_high
    was_low = prev < lower[-2] and rsi[-2] < config.rsi_low
    was_high = prev > upper[-2] and rsi[-2] > config.rsi_high
    width = float(upper[-1] - lower[-1])
    if stretched_low and not was_low:
        action = SignalAction.LONG
        strength = (0.5 * clip01((values["bb_lower"] - now) / (0.25 * width))
                    + 0.5 * clip01((config.rsi_low - rsi[-1]) / 15.0))
    elif stretched_high and not was_high:
        action = SignalAction.SHORT
        strength = (0.5 * clip01((now - values["bb_upper"]) / (0.25 * width))
                    + 0.5 * clip01((rsi[-1] - config.rsi_high) / 15.0))
    else:
        return None
    return candle_signal(
        strategy=NAME,
        version=VERSION,
        window=window,
        action=action,
        strength=float(strength),
        stop_distance=config.stop_atr_multiple * atr,
        config=config,
        reason=f"close {now:.6g} outside the {'lower' if action is SignalAction.LONG else 'upper'} band, "
        f"RSI {rsi[-1]:.1f}",
        indicators=values,
        take_profit=values["bb_middle"],
    )
