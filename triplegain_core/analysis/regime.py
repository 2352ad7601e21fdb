"""Market regime: bull, bear or sideways from a weighted composite, plus a volatility state.

Each component scores the market in -1..1 (positive = bullish, 0 = no evidence):

- ``adx`` (25%): trend strength ``clip((ADX - adx_floor) / (adx_full - adx_floor), 0, 1)``
  signed by ``+DI - -DI``;
- ``choppiness`` (20%): trendiness ``clip((chop_ranging - CHOP) / (chop_ranging -
  chop_trending), 0, 1)`` signed by the slow EMA slope ``EMA21 - EMA50``;
- ``ma_alignment`` (20%): the mean of ``sign(close - EMA9)``, ``sign(EMA9 - EMA21)``,
  ``sign(EMA21 - EMA50)``, scaled by ``clip(|EMA9 - EMA50| / (ma_spread_atr * ATR), 0, 1)`` so
  a stack inside the noise counts for little;
- ``rsi_momentum`` (15%): ``clip((RSI - 50) / rsi_span, -1, 1)``;
- ``volume`` (10%): participation ``clip((volume_ratio - 1) / (volume_full - 1), 0, 1)``
  signed by the 10-bar rate of change (volume confirms the move it comes with);
- ``sentiment`` (10%, optional): the caller's sentiment in -1..1.

The score is ``sum(w_i * s_i) / sum(w_i)`` over the components present, so it stays in
-1..1; without a sentiment the other weights are renormalized (to 90% of the total) and the
result says so. ``score >= threshold`` is bull, ``score <= -threshold`` bear, else sideways.

Volatility state: the percentile of the current ATR% (``natr_14``) among a history of
ATR% values — low below the 25th, normal to the 75th, high to the 95th, extreme above —
or unknown while the history is shorter than ``min_volatility_history``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from triplegain_core.analysis.indicators import FEATURE_NAMES, IndicatorValues, values_at


class MarketRegime(StrEnum):
    """Direction of the market."""

    BULL = "bull"
    BEAR = "bear"
    SIDEWAYS = "sideways"


class VolatilityState(StrEnum):
    """Volatility relative to the symbol's own recent history."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    EXTREME = "extreme"
    UNKNOWN = "unknown"


class RegimeWeights(BaseModel):
    """Weight of each component; any non-negative numbers with a positive sum."""

    model_config = ConfigDict(frozen=True)

    adx: float = Field(default=0.25, ge=0.0)
    choppiness: float = Field(default=0.20, ge=0.0)
    ma_alignment: float = Field(default=0.20, ge=0.0)
    rsi_momentum: float = Field(default=0.15, ge=0.0)
    volume: float = Field(default=0.10, ge=0.0)
    sentiment: float = Field(default=0.10, ge=0.0)

    @model_validator(mode="after")
    def _positive_without_sentiment(self) -> RegimeWeights:
        if self.adx + self.choppiness + self.ma_alignment + self.rsi_momentum + self.volume <= 0.0:
            raise ValueError("the technical components' weights must not all be zero")
        return self


class RegimeConfig(BaseModel):
    """Weights and the scales that map each indicator onto -1..1."""

    model_config = ConfigDict(frozen=True)

    weights: RegimeWeights = RegimeWeights()
    threshold: float = Field(default=0.25, gt=0.0, lt=1.0)
    adx_floor: float = Field(default=20.0, ge=0.0)
    adx_full: float = Field(default=40.0, gt=0.0)
    chop_trending: float = Field(default=38.2, gt=0.0, lt=100.0)
    chop_ranging: float = Field(default=61.8, gt=0.0, lt=100.0)
    ma_spread_atr: float = Field(default=2.0, gt=0.0)
    rsi_span: float = Field(default=20.0, gt=0.0, le=50.0)
    volume_full: float = Field(default=2.0, gt=1.0)
    low_volatility_pct: float = Field(default=0.25, gt=0.0, lt=1.0)
    high_volatility_pct: float = Field(default=0.75, gt=0.0, lt=1.0)
    extreme_volatility_pct: float = Field(default=0.95, gt=0.0, lt=1.0)
    min_volatility_history: int = Field(default=50, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> RegimeConfig:
        if self.adx_full <= self.adx_floor:
            raise ValueError("adx_full must be above adx_floor")
        if self.chop_ranging <= self.chop_trending:
            raise ValueError("chop_ranging must be above chop_trending")
        if not self.low_volatility_pct < self.high_volatility_pct < self.extreme_volatility_pct:
            raise ValueError("volatility percentiles must be ordered low < high < extreme")
        return self


class ComponentContribution(BaseModel):
    """One component's evidence: its input, its score and what it adds to the total."""

    model_config = ConfigDict(frozen=True)

    name: str
    value: float = Field(description="the indicator (or sentiment) the score comes from")
    score: float = Field(ge=-1.0, le=1.0)
    weight: float = Field(ge=0.0, description="configured weight")
    effective_weight: float = Field(ge=0.0, le=1.0, description="weight after renormalization")
    contribution: float = Field(ge=-1.0, le=1.0, description="effective_weight * score")


class RegimeResult(BaseModel):
    """Regime, composite score in -1..1, per-component contributions and volatility state."""

    model_config = ConfigDict(frozen=True)

    regime: MarketRegime
    score: float = Field(ge=-1.0, le=1.0)
    components: tuple[ComponentContribution, ...]
    sentiment_used: bool
    note: str | None = None
    volatility: VolatilityState
    volatility_percentile: float | None = Field(default=None, ge=0.0, le=1.0)
    natr: float

    def component(self, name: str) -> ComponentContribution:
        """The named component (KeyError if absent)."""
        for item in self.components:
            if item.name == name:
                return item
        raise KeyError(name)


_REQUIRED = ("adx_14", "plus_di_14", "minus_di_14", "chop_14", "ema_9", "ema_21", "ema_50",
             "atr_14", "natr_14", "rsi_14", "volume_ratio", "roc_10")


def _clip(value: float, low: float = -1.0, high: float = 1.0) -> float:
    return min(high, max(low, value))


def _sign(value: float) -> float:
    return float((value > 0.0) - (value < 0.0))


class RegimeDetector:
    """Scores the regime of one symbol/timeframe from its latest indicator values."""

    def __init__(self, config: RegimeConfig = RegimeConfig()) -> None:
        self.config = config

    def detect(
        self,
        values: IndicatorValues,
        close: float,
        *,
        volatility_history: Sequence[float] | np.ndarray = (),
        sentiment: float | None = None,
    ) -> RegimeResult:
        """Regime at the candle ``values`` describe (closing at ``close``).

        ``volatility_history``: earlier ``natr_14`` values of the same symbol/timeframe (NaN
        ignored). ``sentiment``: optional, in -1..1. ValueError while any needed indicator is
        still warming up, for a non-finite close or an out-of-range sentiment.
        """
        missing = [name for name in _REQUIRED if not math.isfinite(getattr(values, name))]
        if missing:
            raise ValueError(f"indicators still warming up (NaN): {', '.join(missing)}")
        if not math.isfinite(close) or close <= 0.0:
            raise ValueError(f"close must be a positive number, got {close!r}")
        if sentiment is not None and not -1.0 <= sentiment <= 1.0:
            raise ValueError(f"sentiment must be in -1..1, got {sentiment!r}")
        raw = self._component_scores(values, close)
        if sentiment is not None:
            raw.append(("sentiment", sentiment, sentiment))
        weights = self.config.weights
        total = sum(getattr(weights, name) for name, _, _ in raw)
        components = tuple(
            ComponentContribution(
                name=name, value=value, score=score, weight=getattr(weights, name),
                effective_weight=getattr(weights, name) / total,
                contribution=getattr(weights, name) / total * score,
            )
            for name, value, score in raw
        )
        score = _clip(sum(c.contribution for c in components))
        if score >= self.config.threshold:
            regime = MarketRegime.BULL
        elif score <= -self.config.threshold:
            regime = MarketRegime.BEAR
        else:
            regime = MarketRegime.SIDEWAYS
        note = None
        if sentiment is None:
            note = (f"sentiment absent: the other weights were renormalized over {total:.2f} "
                    "of the total")
        state, percentile = self._volatility(values.natr_14, volatility_history)
        return RegimeResult(
            regime=regime, score=score, components=components, sentiment_used=sentiment is not None,
            note=note, volatility=state, volatility_percentile=percentile, natr=values.natr_14,
        )

    def detect_frame(
        self, frame: pd.DataFrame, *, sentiment: float | None = None, volatility_lookback: int = 500
    ) -> RegimeResult:
        """Regime at the last row of a frame holding ``close`` and the FEATURE_NAMES columns
        (e.g. :func:`~triplegain_core.analysis.indicators.multi_timeframe_feature_frames` output); the
        ATR% of up to ``volatility_lookback`` earlier rows is the volatility history.
        """
        absent = [c for c in ("close", *FEATURE_NAMES) if c not in frame.columns]
        if absent:
            raise ValueError(f"frame lacks columns: {', '.join(absent)}")
        if frame.empty:
            raise ValueError("empty frame")
        history = frame["natr_14"].to_numpy(dtype=np.float64)[-volatility_lookback - 1 : -1]
        return self.detect(values_at(frame), float(frame["close"].iloc[-1]),
                           volatility_history=history, sentiment=sentiment)

    def _component_scores(self, v: IndicatorValues, close: float) -> list[tuple[str, float, float]]:
        cfg = self.config
        adx_strength = _clip((v.adx_14 - cfg.adx_floor) / (cfg.adx_full - cfg.adx_floor), 0.0, 1.0)
        trendiness = _clip((cfg.chop_ranging - v.chop_14) / (cfg.chop_ranging - cfg.chop_trending), 0.0, 1.0)
        stack = (_sign(close - v.ema_9) + _sign(v.ema_9 - v.ema_21) + _sign(v.ema_21 - v.ema_50)) / 3.0
        spread = 0.0
        if v.atr_14 > 0.0:
            spread = _clip(abs(v.ema_9 - v.ema_50) / (cfg.ma_spread_atr * v.atr_14), 0.0, 1.0)
        participation = _clip((v.volume_ratio - 1.0) / (cfg.volume_full - 1.0), 0.0, 1.0)
        return [
            ("adx", v.adx_14, adx_strength * _sign(v.plus_di_14 - v.minus_di_14)),
            ("choppiness", v.chop_14, trendiness * _sign(v.ema_21 - v.ema_50)),
            ("ma_alignment", stack, stack * spread),
            ("rsi_momentum", v.rsi_14, _clip((v.rsi_14 - 50.0) / cfg.rsi_span)),
            ("volume", v.volume_ratio, participation * _sign(v.roc_10)),
        ]

    def _volatility(
        self, natr: float, history: Sequence[float] | np.ndarray
    ) -> tuple[VolatilityState, float | None]:
        past = np.asarray(history, dtype=np.float64)
        past = past[np.isfinite(past)]
        if len(past) < self.config.min_volatility_history:
            return VolatilityState.UNKNOWN, None
        percentile = float(np.count_nonzero(past < natr) / len(past))
        cfg = self.config
        if percentile >= cfg.extreme_volatility_pct:
            return VolatilityState.EXTREME, percentile
        if percentile >= cfg.high_volatility_pct:
            return VolatilityState.HIGH, percentile
        if percentile < cfg.low_volatility_pct:
            return VolatilityState.LOW, percentile
        return VolatilityState.NORMAL, percentile
