"""Whale sentiment (contrarian): fade the candle where an outsized volume spike moved price hard.

A candle whose volume is at least ``spike_multiple`` times the median volume of the previous
``volume_lookback`` candles, with a body of at least ``min_body_atr`` ATRs, is a whale print.
A red one is read as capitulation: LONG; a green one as euphoria: SHORT. The spike candle's
extreme (its low for a LONG) is the invalidation and anchors the stop.
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

NAME = "whale_sentiment"
VERSION = "1.0.0"
SYMBOLS = TRADED_SYMBOLS
READS = frozenset({"candles"})


class Config(BracketConfig):
    """What counts as a whale print."""

    timeframe: str = "5m"
    volume_lookback: int = Field(default=48, ge=5)
    spike_multiple: float = Field(default=4.0, gt=1.0)
    min_body_atr: float = Field(default=1.0, gt=0.0)
    stop_buffer_atr: float = Field(default=0.25, ge=0.0)


def generate_signal(snapshot: MarketSnapshot, config: Config, state: StrategyState) -> Signal | None:
    """Contrarian LONG after a red whale print, SHORT after a green one."""
    window = snapshot.window(state.symbol, config.timeframe)
    if window is None or len(window) < config.volume_lookback + 16:
        return None
    window = window.tail(config.volume_lookback + 16)
    open_, high, low, close, volume = window.open, window.high, window.low, window.close, window.volume
    median_volume = float(np.median(volume[-config.volume_lookback - 1 : -1]))
    atr = float(talib.ATR(high[:-1], low[:-1], close[:-1], timeperiod=14)[-1])
    if median_volume <= 0.0 or math.isnan(atr) or atr <= 0.0:
        return None
    spike = float(volume[-1]) / median_volume
    body = float(close[-1] - open_[-1])
    if spike < config.spike_multiple or abs(body) < config.min_body_atr * atr:
        return None
    entry = float(close[-1])
    if body < 0.0:
        action, extreme = SignalAction.LONG, float(low[-1])
    else:
        action, extreme = SignalAction.SHORT, float(high[-1])
    return candle_signal(
        strategy=NAME,
        version=VERSION,
        window=window,
        action=action,
        strength=(0.5 * clip01((spike - config.spike_multiple) / config.spike_multiple)
                  + 0.5 * clip01(abs(body) / (3.0 * atr))),
        stop_distance=abs(entry - extreme) + config.stop_buffer_atr * atr,
        config=config,
        reason=f"{'red' if body < 0 else 'green'} whale print: {spike:.1f}x median volume, "
        f"body {abs(body) / atr:.1f} ATR; fading it",
        indicators={"volume_spike": spike, "body_atr": abs(body) / atr, "atr": atr, "median_volume": median_volume},
        invalidation=extreme if extreme != entry else None,
    )


def signal_candidates(candles: CandleWindow, first: int, config: Config) -> np.ndarray:
    """The rows from ``first`` on where :func:`generate_signal` may signal: a candle with the
    volume spike it needs over the median of the ``volume_lookback`` before it (within a
    billionth: it divides where this multiplies); every row without that look-back."""
    volume = candles.volume
    return rows_after_lookback(
        candles, first, config.volume_lookback,
        lambda start: volume[start:] >= config.spike_multiple
        * np.median(windows_before(volume, config.volume_lookback, start), axis=1) * (1.0 - 1e-9))


SIGNAL_CANDIDATES = signal_candidates
