"""The TechnicalAgent: a trend-following momentum rule on the last closed candle.

LONG when the EMAs are stacked upwards (EMA9 > EMA21 > EMA50), the MACD histogram is
positive, RSI is below overbought and ADX shows a trend; SHORT is the mirror image.

Strength (0..1) is a weighted mean of three scores, each clipped to 0..1:

- trend: ADX from ``adx_threshold`` (0) to ``adx_full`` (1), weight 0.4;
- momentum: |MACD histogram| / (``macd_hist_atr_scale`` * ATR), weight 0.3;
- spread: |EMA9 - EMA50| / (``ema_spread_atr_scale`` * ATR), weight 0.3.

Dividing by ATR makes the momentum and spread scores comparable across symbols and prices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from triplegain_core.analysis.indicators import MIN_HISTORY, core_indicator_arrays, latest_indicators
from triplegain_core.marketdata.snapshot import CandleWindow
from triplegain_core.model.market import Candle, us_to_datetime
from triplegain_core.model.signals import Direction, Signal, SignalAction

STRATEGY = "technical_trend"
VERSION = "1"

TREND_WEIGHT = 0.4
MOMENTUM_WEIGHT = 0.3
SPREAD_WEIGHT = 0.3
# The margins of candidate_rows: relative (EMAs; the MACD histogram against the price), in
# indicator points (RSI, ADX) and on the strength (NaN scores count as strong enough).
_CANDIDATE_ROOM = 1e-4
_CANDIDATE_POINTS = 0.5
_CANDIDATE_STRENGTH = 0.02
# The shortest window those margins hold for (the EMA50 seed's weight then under 5e-5).
CANDIDATE_MIN_WINDOW = 300


class TechnicalAgentConfig(BaseModel):
    """Thresholds and levels of the trend rule."""

    model_config = ConfigDict(frozen=True)

    min_strength: float = Field(default=0.5, ge=0.0, le=1.0)
    stop_atr_multiple: float = Field(default=1.5, gt=0.0)
    reward_risk: float = Field(default=2.0, gt=0.0)
    # The stop is clamped into [min, max] * entry: max so the RiskAgent's 2% rule passes,
    # min so a near-zero ATR (flat market) cannot put the stop inside the spread and fees.
    max_stop_distance: float = Field(default=0.02, gt=0.0, lt=1.0)
    min_stop_distance: float = Field(default=0.002, gt=0.0, lt=1.0)
    adx_threshold: float = Field(default=20.0, ge=0.0)
    adx_full: float = Field(default=45.0, gt=0.0)
    rsi_overbought: float = Field(default=70.0, gt=0.0, lt=100.0)
    rsi_oversold: float = Field(default=30.0, gt=0.0, lt=100.0)
    macd_hist_atr_scale: float = Field(default=0.3, gt=0.0)
    ema_spread_atr_scale: float = Field(default=2.0, gt=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> TechnicalAgentConfig:
        if self.min_stop_distance > self.max_stop_distance:
            raise ValueError("min_stop_distance must not exceed max_stop_distance")
        if self.adx_full <= self.adx_threshold:
            raise ValueError("adx_full must be above adx_threshold")
        if self.rsi_oversold >= self.rsi_overbought:
            raise ValueError("rsi_oversold must be below rsi_overbought")
        return self


def _latest(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> dict[str, float] | None:
    """The indicator values at the last bar, or None while any is NaN; exactly
    :func:`~triplegain_core.analysis.indicators.latest_indicators`, whose computation it shares."""
    latest = {name: float(values[-1]) for name, values in core_indicator_arrays(high, low, close).items()}
    if any(math.isnan(value) for value in latest.values()):
        return None
    return latest


def _clip01(value: float) -> float:
    return min(1.0, max(0.0, value))


class TechnicalAgent:
    """Turns a symbol's closed-candle history into at most one signal per candle."""

    def __init__(self, config: TechnicalAgentConfig | None = None) -> None:
        self.config = config or TechnicalAgentConfig()

    def analyze(self, symbol: str, candles: Sequence[Candle]) -> Signal | None:
        """Signal on the last candle of ``candles`` (closed, oldest first), or None.

        None when history is too short for every indicator, when no direction qualifies,
        or when the strength is below ``min_strength``.
        """
        if not candles:
            return None
        last = candles[-1]
        if last.symbol != symbol:
            raise ValueError(f"candles are {last.symbol}, asked to analyze {symbol}")
        values = latest_indicators(candles)
        if values is None:
            return None
        return self._signal(symbol, last.timeframe, last.open_time_us, last.close_time_us, last.close, values)

    def analyze_window(self, window: CandleWindow) -> Signal | None:
        """:meth:`analyze` on the candles of ``window``: the same signal, read from its columns.

        The trading loop's hot path: the indicators run on the window's float64 arrays as they
        are, where :meth:`analyze` first gathers them from candle objects.
        """
        if len(window) < MIN_HISTORY:
            return None
        values = _latest(window.high, window.low, window.close)
        if values is None:
            return None
        return self._signal(window.symbol, window.timeframe, window.last_open_time_us, window.last_close_time_us,
                            float(window.close[-1]), values)

    def candidate_rows(self, candles: CandleWindow, first: int, window: int) -> np.ndarray:
        """The rows of ``candles`` from ``first`` on where :meth:`analyze_window`, shown the last
        ``window`` candles up to the row, may signal.

        Its rule on the indicators of the whole series, loosened by margins: where a window
        starts with the series, its indicators are those of the series; further on they differ
        only by their seeds' weight after ``window - 50`` candles (for EMA50 and 300 candles,
        (49/51)^250 < 5e-5 of the seed's distance from the price), far inside the margins. Every
        row where an indicator is unknown may signal; none shown fewer than ``MIN_HISTORY``.
        With a ``window`` shorter than :data:`CANDIDATE_MIN_WINDOW` the seeds weigh too much for
        the margins: every row may signal."""
        cfg = self.config
        if window < CANDIDATE_MIN_WINDOW:
            return np.ones(len(candles) - first, dtype=bool)
        values = {name: array[first:] for name, array in
                  core_indicator_arrays(candles.high, candles.low, candles.close).items()}
        ema9, ema21, ema50 = values["ema_9"], values["ema_21"], values["ema_50"]
        hist, rsi, adx, atr = values["macd_hist"], values["rsi_14"], values["adx_14"], values["atr_14"]
        room = _CANDIDATE_ROOM
        long = (ema9 > ema21 * (1 - room)) & (ema21 > ema50 * (1 - room)) & (hist > -room * ema50) \
            & (rsi < cfg.rsi_overbought + _CANDIDATE_POINTS)
        short = (ema9 < ema21 * (1 + room)) & (ema21 < ema50 * (1 + room)) & (hist < room * ema50) \
            & (rsi > cfg.rsi_oversold - _CANDIDATE_POINTS)
        with np.errstate(divide="ignore", invalid="ignore"):
            trend = np.clip((adx - cfg.adx_threshold) / (cfg.adx_full - cfg.adx_threshold), 0.0, 1.0)
            momentum = np.clip(np.abs(hist) / (cfg.macd_hist_atr_scale * atr), 0.0, 1.0)
            spread = np.clip(np.abs(ema9 - ema50) / (cfg.ema_spread_atr_scale * atr), 0.0, 1.0)
        strength = TREND_WEIGHT * trend + MOMENTUM_WEIGHT * momentum + SPREAD_WEIGHT * spread
        strong = (adx >= cfg.adx_threshold - _CANDIDATE_POINTS) & ~(strength < cfg.min_strength - _CANDIDATE_STRENGTH)
        unknown = np.zeros(len(ema9), dtype=bool)
        for array in values.values():
            unknown |= np.isnan(array)
        rows = ((long | short) & strong) | unknown
        shown = np.minimum(np.arange(first, len(candles)) + 1, window)
        candidates: np.ndarray = rows & (shown >= MIN_HISTORY)
        return candidates

    def _signal(
        self, symbol: str, timeframe: str, open_time_us: int, close_time_us: int, entry: float,
        values: dict[str, float],
    ) -> Signal | None:
        """The signal on the candle opening at ``open_time_us`` with these indicator values."""
        direction = self.direction(values)
        if direction is None:
            return None
        strength = self.strength(values)
        if strength < self.config.min_strength:
            return None
        stop_distance = min(
            max(self.config.stop_atr_multiple * values["atr_14"], self.config.min_stop_distance * entry),
            self.config.max_stop_distance * entry,
        )
        sign = 1.0 if direction is Direction.LONG else -1.0
        return Signal(
            signal_id=f"{STRATEGY}:{symbol}:{timeframe}:{open_time_us}",
            strategy=STRATEGY,
            strategy_version=VERSION,
            symbol=symbol,
            timeframe=timeframe,
            time=us_to_datetime(close_time_us),
            action=SignalAction(direction.value),
            strength=strength,
            entry=entry,
            stop_loss=entry - sign * stop_distance,
            take_profit=entry + sign * self.config.reward_risk * stop_distance,
            reason=f"EMAs stacked {direction}, MACD histogram {values['macd_hist']:+.3g}, ADX {values['adx_14']:.1f}",
            indicators=values,
        )

    def direction(self, v: dict[str, float]) -> Direction | None:
        """The direction the trend rule of the module docstring gives for the indicator values
        ``v`` (finite, named as in ``indicators.INDICATOR_NAMES``), or None: no trend, no ATR,
        or no stacked EMAs with a MACD histogram and RSI to match."""
        cfg = self.config
        if v["adx_14"] < cfg.adx_threshold or v["atr_14"] <= 0.0:
            return None
        if (
            v["ema_9"] > v["ema_21"] > v["ema_50"]
            and v["macd_hist"] > 0.0
            and v["rsi_14"] < cfg.rsi_overbought
        ):
            return Direction.LONG
        if (
            v["ema_9"] < v["ema_21"] < v["ema_50"]
            and v["macd_hist"] < 0.0
            and v["rsi_14"] > cfg.rsi_oversold
        ):
            return Direction.SHORT
        return None

    def strength(self, v: dict[str, float]) -> float:
        """The weighted trend/momentum/spread score of the module docstring, in 0..1."""
        cfg = self.config
        atr = v["atr_14"]
        if atr <= 0.0:
            return 0.0
        trend = _clip01((v["adx_14"] - cfg.adx_threshold) / (cfg.adx_full - cfg.adx_threshold))
        momentum = _clip01(abs(v["macd_hist"]) / (cfg.macd_hist_atr_scale * atr))
        spread = _clip01(abs(v["ema_9"] - v["ema_50"]) / (cfg.ema_spread_atr_scale * atr))
        # Clipped again only against float rounding of the weighted sum.
        return _clip01(TREND_WEIGHT * trend + MOMENTUM_WEIGHT * momentum + SPREAD_WEIGHT * spread)
