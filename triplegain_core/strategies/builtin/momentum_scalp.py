"""Momentum scalping (1m): RSI(7) breaking out in the direction of the fast EMA trend on volume.

LONG on the candle where RSI crosses above ``rsi_trigger_long`` while EMA8 > EMA21 and the
candle's volume is at least ``volume_multiple`` times the mean of the previous
``volume_period`` candles; SHORT mirrored. Tight ATR stop, 1.5 R target.
"""

from __future__ import annotations

import math

import numpy as np
import talib
from pydantic import Field

from triplegain_core.marketdata.snapshot import CandleWindow, MarketSnapshot
from triplegain_core.model.market import TRADED_SYMBOLS
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.candidates import rows_after_lookback, windows_before
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.levels import BracketConfig, candle_signal, clip01

NAME = "momentum_scalp"
VERSION = "1.0.0"
SYMBOLS = TRADED_SYMBOLS
READS = frozenset({"candles"})
# Rounding room for the volume burst worked out over a whole batch (numpy may sum a mean's
# terms in another order than generate_signal's own mean).
_VOLUME_ROOM = 1e-9


class Config(BracketConfig):
    """Fast trend, RSI trigger and volume confirmation on 1-minute candles."""

    timeframe: str = "1m"
    window: int = Field(default=80, ge=30)
    fast_ema: int = Field(default=8, ge=2)
    slow_ema: int = Field(default=21, ge=3)
    rsi_period: int = Field(default=7, ge=2)
    rsi_trigger_long: float = Field(default=60.0, gt=50.0, lt=100.0)
    rsi_trigger_short: float = Field(default=40.0, gt=0.0, lt=50.0)
    volume_period: int = Field(default=20, ge=2)
    volume_multiple: float = Field(default=1.5, gt=0.0)
    stop_atr_multiple: float = Field(default=1.0, gt=0.0)
    reward_risk: float = Field(default=1.5, gt=0.0)


def generate_signal(snapshot: MarketSnapshot, config: Config, state: StrategyState) -> Signal | None:
    """LONG/SHORT on an RSI trigger cross with the EMA trend and a volume burst."""
    window = snapshot.window(state.symbol, config.timeframe)
    if window is None or len(window) < max(config.slow_ema, config.volume_period, 14) + 2:
        return None
    window = window.tail(config.window)
    close, volume = window.close, window.volume
    fast = float(talib.EMA(close, timeperiod=config.fast_ema)[-1])
    slow = float(talib.EMA(close, timeperiod=config.slow_ema)[-1])
    rsi = talib.RSI(close, timeperiod=config.rsi_period)
    atr = float(talib.ATR(window.high, window.low, close, timeperiod=14)[-1])
    mean_volume = float(volume[-config.volume_period - 1 : -1].mean())
    if math.isnan(slow) or math.isnan(rsi[-2]) or math.isnan(atr) or atr <= 0.0 or mean_volume <= 0.0:
        return None
    volume_ratio = float(volume[-1]) / mean_volume
    if volume_ratio < config.volume_multiple:
        return None
    if fast > slow and rsi[-2] <= config.rsi_trigger_long < rsi[-1]:
        action = SignalAction.LONG
    elif fast < slow and rsi[-2] >= config.rsi_trigger_short > rsi[-1]:
        action = SignalAction.SHORT
    else:
        return None
    surplus_volume = (volume_ratio - config.volume_multiple) / config.volume_multiple
    strength = 0.5 * clip01(abs(fast - slow) / atr) + 0.5 * clip01(surplus_volume)
    return candle_signal(
        strategy=NAME,
        version=VERSION,
        window=window,
        action=action,
        strength=strength,
        stop_distance=config.stop_atr_multiple * atr,
        config=config,
        reason=f"RSI{config.rsi_period} crossed to {rsi[-1]:.1f} with EMA{config.fast_ema} "
        f"{'above' if action is SignalAction.LONG else 'below'} EMA{config.slow_ema} on {volume_ratio:.1f}x volume",
        indicators={"ema_fast": fast, "ema_slow": slow, "rsi": float(rsi[-1]), "atr": atr,
                    "volume_ratio": volume_ratio},
    )


def signal_candidates(candles: CandleWindow, first: int, config: Config) -> np.ndarray:
    """The rows from ``first`` on where :func:`generate_signal` may signal: a candle with the
    volume burst it needs (every row without the look-back to tell)."""
    volume = candles.volume
    return rows_after_lookback(
        candles, first, config.volume_period,
        lambda start: volume[start:] >= config.volume_multiple
        * windows_before(volume, config.volume_period, start).mean(axis=1) * (1.0 - _VOLUME_ROOM))


SIGNAL_CANDIDATES = signal_candidates
