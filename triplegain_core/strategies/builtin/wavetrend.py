"""WaveTrend oscillator (LazyBear): wave 1 crossing wave 2 in oversold / overbought territory.

ap = (high + low + close) / 3; esa = EMA(ap, n1); d = EMA(|ap - esa|, n1);
ci = (ap - esa) / (0.015 d); wt1 = EMA(ci, n2); wt2 = SMA(wt1, 4). LONG on the candle where wt1
crosses above wt2 below ``oversold``; SHORT where it crosses below wt2 above ``overbought``.
"""

from __future__ import annotations

import math

import numpy as np
import talib
from pydantic import Field

from triplegain_core.marketdata.snapshot import CandleWindow, MarketSnapshot
from triplegain_core.model.market import TRADED_SYMBOLS
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.candidates import rows_after_lookback, windowed_ema, windows_through
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.levels import BracketConfig, candle_signal, clip01

NAME = "wavetrend"
VERSION = "1.0.0"
SYMBOLS = TRADED_SYMBOLS
READS = frozenset({"candles"})


# Room for the wave worked out in bulk (its EMAs seeded by sums rounded otherwise than TA-Lib's):
# far above their last-bit differences, far below the waves' scale (tens).
_WAVE_ROOM = 1e-6
# A channel this narrow against the price is flat: where TA-Lib's reads zero and ours not.
_FLAT_CHANNEL = 1e-9


class Config(BracketConfig):
    """Channel and average lengths and the two territory levels."""

    timeframe: str = "5m"
    window: int = Field(default=100, ge=60)
    channel: int = Field(default=10, ge=2)
    average: int = Field(default=21, ge=2)
    overbought: float = Field(default=53.0, gt=0.0)
    oversold: float = Field(default=-53.0, lt=0.0)
    stop_atr_multiple: float = Field(default=1.5, gt=0.0)


def wave_trend(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, channel: int, average: int
) -> tuple[np.ndarray, np.ndarray]:
    """(wt1, wt2) aligned with the *end* of the inputs (warm-up trimmed, NaN while undefined)."""
    ap = (high + low + close) / 3.0
    # TA-Lib's EMA does not skip leading NaNs, so each stage starts past the previous warm-up.
    deviation = (ap - talib.EMA(ap, timeperiod=channel))[channel - 1 :]
    d = talib.EMA(np.abs(deviation), timeperiod=channel)[channel - 1 :]
    deviation = deviation[channel - 1 :]
    # A flat stretch (d == 0) has no channel: read it as neutral rather than infinite.
    ci = np.divide(deviation, 0.015 * d, out=np.zeros_like(d), where=d > 0.0)
    wt1 = talib.EMA(ci, timeperiod=average)
    return wt1, talib.SMA(wt1, timeperiod=4)


def generate_signal(snapshot: MarketSnapshot, config: Config, state: StrategyState) -> Signal | None:
    """LONG/SHORT on a wt1/wt2 cross in oversold/overbought territory."""
    window = snapshot.window(state.symbol, config.timeframe)
    if window is None or len(window) < 2 * config.channel + config.average + 6:
        return None
    window = window.tail(config.window)
    wt1, wt2 = wave_trend(window.high, window.low, window.close, config.channel, config.average)
    atr = float(talib.ATR(window.high[-50:], window.low[-50:], window.close[-50:], timeperiod=14)[-1])
    if any(math.isnan(v) for v in (wt1[-1], wt1[-2], wt2[-1], wt2[-2], atr)) or atr <= 0.0:
        return None
    if wt1[-2] <= wt2[-2] and wt1[-1] > wt2[-1] and wt1[-1] < config.oversold:
        action, depth = SignalAction.LONG, (config.oversold - wt1[-1]) / abs(config.oversold)
    elif wt1[-2] >= wt2[-2] and wt1[-1] < wt2[-1] and wt1[-1] > config.overbought:
        action, depth = SignalAction.SHORT, (wt1[-1] - config.overbought) / config.overbought
    else:
        return None
    return candle_signal(
        strategy=NAME,
        version=VERSION,
        window=window,
        action=action,
        strength=clip01(0.5 + depth),
        stop_distance=config.stop_atr_multiple * atr,
        config=config,
        reason=f"WaveTrend wt1 {wt1[-1]:.1f} crossed wt2 {wt2[-1]:.1f} "
        f"in {'oversold' if action is SignalAction.LONG else 'overbought'} territory",
        indicators={"wt1": float(wt1[-1]), "wt2": float(wt2[-1]), "atr": atr},
    )


def signal_candidates(candles: CandleWindow, first: int, config: Config) -> np.ndarray:
    """The rows from ``first`` on where :func:`generate_signal` may signal: a wt1/wt2 cross in
    either territory, each test loosened by a millionth; every row whose channel is near flat,
    or without a whole window of candles behind it."""

    def rule(start: int) -> np.ndarray:
        high, low, close = (windows_through(column, config.window, start)
                            for column in (candles.high, candles.low, candles.close))
        ap = (high + low + close) / 3.0
        channel = config.channel
        deviation = ap[:, channel - 1:] - windowed_ema(ap, channel)
        d = windowed_ema(np.abs(deviation), channel)
        deviation = deviation[:, channel - 1:]
        ci = np.divide(deviation, 0.015 * d, out=np.zeros_like(d), where=d > 0.0)
        wt1 = windowed_ema(ci, config.average)
        wt2_now, wt2_before = wt1[:, -4:].mean(axis=1), wt1[:, -5:-1].mean(axis=1)
        now, before, room = wt1[:, -1], wt1[:, -2], _WAVE_ROOM
        up = (before <= wt2_before + room) & (now > wt2_now - room) & (now < config.oversold + room)
        down = (before >= wt2_before - room) & (now < wt2_now + room) & (now > config.overbought - room)
        flat = (d <= _FLAT_CHANNEL * ap[:, -d.shape[1]:]).any(axis=1)
        marked: np.ndarray = up | down | flat | ~np.isfinite(now) | ~np.isfinite(before)
        return marked

    return rows_after_lookback(candles, first, config.window - 1, rule)


SIGNAL_CANDIDATES = signal_candidates
