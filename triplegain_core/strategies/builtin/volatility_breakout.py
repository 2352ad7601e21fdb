"""Volatility breakout (built-in #2): a wide candle closing beyond the recent range.

LONG when the last close is above the highest high of the previous ``channel`` candles and the
candle's range is at least ``min_range_atr`` times the ATR measured *before* it (so the
breakout candle does not inflate its own yardstick); SHORT below the lowest low. The broken
level is the invalidation: back inside the channel, the breakout failed.
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

NAME = "volatility_breakout"
VERSION = "1.0.0"
SYMBOLS = TRADED_SYMBOLS
READS = frozenset({"candles"})


class Config(BracketConfig):
    """Channel length, ATR period and how wide the breakout candle must be."""

    timeframe: str = "5m"
    window: int = Field(default=120, ge=40)
    channel: int = Field(default=20, ge=2)
    atr_period: int = Field(default=14, ge=2)
    min_range_atr: float = Field(default=1.5, gt=0.0)
    stop_atr_multiple: float = Field(default=1.0, gt=0.0)


def generate_signal(snapshot: MarketSnapshot, config: Config, state: StrategyState) -> Signal | None:
    """LONG/SHORT on a wide candle closing outside the previous channel."""
    window = snapshot.window(state.symbol, config.timeframe)
    need = max(config.channel, config.atr_period) + 2
    if window is None or len(window) < need:
        return None
    window = window.tail(config.window)
    high, low, close = window.high, window.low, window.close
    atr_before = float(talib.ATR(high[:-1], low[:-1], close[:-1], timeperiod=config.atr_period)[-1])
    if math.isnan(atr_before) or atr_before <= 0.0:
        return None
    channel_high = float(high[-config.channel - 1 : -1].max())
    channel_low = float(low[-config.channel - 1 : -1].min())
    last_close, candle_range = float(close[-1]), float(high[-1] - low[-1])
    range_atr = candle_range / atr_before
    if range_atr < config.min_range_atr:
        return None
    if last_close > channel_high:
        action, level, beyond = SignalAction.LONG, channel_high, last_close - channel_high
    elif last_close < channel_low:
        action, level, beyond = SignalAction.SHORT, channel_low, channel_low - last_close
    else:
        return None
    surplus_range = (range_atr - config.min_range_atr) / config.min_range_atr
    strength = 0.5 * clip01(beyond / atr_before) + 0.5 * clip01(surplus_range)
    return candle_signal(
        strategy=NAME,
        version=VERSION,
        window=window,
        action=action,
        strength=strength,
        stop_distance=config.stop_atr_multiple * atr_before,
        config=config,
        reason=f"close {last_close:.6g} broke the {config.channel}-candle "
        f"{'high' if action is SignalAction.LONG else 'low'} "
        f"{level:.6g} on a {range_atr:.1f}x ATR candle",
        indicators={"channel_high": channel_high, "channel_low": channel_low, "atr_before": atr_before,
                    "range_atr": range_atr},
        invalidation=level,
    )


def signal_candidates(candles: CandleWindow, first: int, config: Config) -> np.ndarray:
    """The rows from ``first`` on where :func:`generate_signal` may signal: a close outside the
    channel of the ``channel`` candles before it (every row without them)."""
    def rule(start: int) -> np.ndarray:
        highs = windows_before(candles.high, config.channel, start).max(axis=1)
        lows = windows_before(candles.low, config.channel, start).min(axis=1)
        close = candles.close[start:]
        outside: np.ndarray = (close > highs) | (close < lows)
        return outside

    return rows_after_lookback(candles, first, config.channel, rule)


SIGNAL_CANDIDATES = signal_candidates
