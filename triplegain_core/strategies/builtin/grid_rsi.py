"""Grid RSI reversion: buy each grid step down from the mean when RSI agrees, sell each step up.

Grid levels sit every ``spacing`` (a fraction) around an anchor, the SMA of the close. LONG on
the candle whose close crosses down into a lower grid level (level <= -1) with RSI under
``rsi_low``; the take-profit is the next level toward the anchor. SHORT mirrored above. The
stop is ``stop_levels`` grid steps away (clamped to the 2% rule).
"""

from __future__ import annotations

import math

import numpy as np
import talib
from pydantic import Field

from triplegain_core.marketdata.snapshot import CandleWindow, MarketSnapshot
from triplegain_core.model.market import TRADED_SYMBOLS
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.candidates import rows_after_lookback, windows_through
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.levels import BracketConfig, candle_signal, clip01

NAME = "grid_rsi"
VERSION = "1.0.0"
SYMBOLS = TRADED_SYMBOLS
READS = frozenset({"candles"})


class Config(BracketConfig):
    """Grid spacing, anchor length and RSI thresholds."""

    timeframe: str = "5m"
    window: int = Field(default=100, ge=30)
    anchor_period: int = Field(default=48, ge=5)
    spacing: float = Field(default=0.005, gt=0.0, lt=0.1)
    rsi_period: int = Field(default=14, ge=2)
    rsi_low: float = Field(default=40.0, gt=0.0, lt=50.0)
    rsi_high: float = Field(default=60.0, gt=50.0, lt=100.0)
    stop_levels: float = Field(default=2.0, gt=0.0)


def grid_level(price: float, anchor: float, spacing: float) -> int:
    """The grid level of ``price``: 0 within one step of the anchor, -1 one step below, ..."""
    return int((price - anchor) / (anchor * spacing))


def generate_signal(snapshot: MarketSnapshot, config: Config, state: StrategyState) -> Signal | None:
    """LONG/SHORT when the close crosses into a new grid level away from the anchor."""
    window = snapshot.window(state.symbol, config.timeframe)
    if window is None or len(window) < max(config.anchor_period, config.rsi_period) + 2:
        return None
    window = window.tail(config.window)
    close = window.close
    anchor = float(talib.SMA(close, timeperiod=config.anchor_period)[-1])
    rsi = float(talib.RSI(close, timeperiod=config.rsi_period)[-1])
    if math.isnan(anchor) or math.isnan(rsi):
        return None
    now, prev = float(close[-1]), float(close[-2])
    level, prev_level = grid_level(now, anchor, config.spacing), grid_level(prev, anchor, config.spacing)
    step = anchor * config.spacing
    if level <= -1 and level < prev_level and rsi < config.rsi_low:
        action = SignalAction.LONG
        strength = 0.5 * clip01(-level / 4.0) + 0.5 * clip01((config.rsi_low - rsi) / config.rsi_low)
        target = anchor + (level + 1) * step
    elif level >= 1 and level > prev_level and rsi > config.rsi_high:
        action = SignalAction.SHORT
        strength = 0.5 * clip01(level / 4.0) + 0.5 * clip01((rsi - config.rsi_high) / (100.0 - config.rsi_high))
        target = anchor + (level - 1) * step
    else:
        return None
    return candle_signal(
        strategy=NAME,
        version=VERSION,
        window=window,
        action=action,
        strength=strength,
        stop_distance=config.stop_levels * step,
        config=config,
        reason=f"close {now:.6g} crossed into grid level {level} around {anchor:.6g}, RSI {rsi:.1f}",
        indicators={"anchor": anchor, "rsi": rsi, "grid_level": float(level), "grid_step": step},
        take_profit=target,
    )


def signal_candidates(candles: CandleWindow, first: int, config: Config) -> np.ndarray:
    """The rows from ``first`` on where :func:`generate_signal` may signal: the close in another
    grid level than the one before it, one or more steps from the anchor, or within a millionth
    of a step of a level's edge (the anchor here is summed otherwise than TA-Lib's); every row
    without the anchor's look-back."""
    close = candles.close

    def rule(start: int) -> np.ndarray:
        anchor = windows_through(close, config.anchor_period, start).mean(axis=1)
        steps = anchor * config.spacing
        now = (close[start:] - anchor) / steps
        before = (close[start - 1:-1] - anchor) / steps
        edge = 1e-6
        near = (np.abs(now - np.round(now)) < edge) | (np.abs(before - np.round(before)) < edge)
        moved = np.trunc(now) != np.trunc(before)
        away = np.abs(now) >= 1.0 - edge
        marked: np.ndarray = (moved & away) | near
        return marked

    return rows_after_lookback(candles, first, config.anchor_period, rule)


SIGNAL_CANDIDATES = signal_candidates
