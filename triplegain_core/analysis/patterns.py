"""Chart patterns over the indicator set: Bollinger squeeze, multi-timeframe trend
alignment, and support/resistance levels from clustered swing pivots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.analysis.indicators import IndicatorValues


class SqueezeResult(BaseModel):
    """Whether the Bollinger bands are squeezed at the last candle.

    ``width_percentile`` is the share of the previous ``lookback`` band widths that are
    narrower than the current one (0 = narrowest of the window). A squeeze is a percentile
    at or below ``threshold`` and, when ``require_keltner``, bands inside the Keltner channel.
    """

    model_config = ConfigDict(frozen=True)

    is_squeeze: bool
    bb_width: float
    width_percentile: float = Field(ge=0.0, le=1.0)
    threshold: float
    inside_keltner: bool
    require_keltner: bool
    lookback: int


def _squeeze_inputs(features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    needed = ["bb_width", "bb_upper", "bb_lower", "kc_upper", "kc_lower"]
    absent = [c for c in needed if c not in features.columns]
    if absent:
        raise ValueError(f"features lack columns: {', '.join(absent)}")
    width = features["bb_width"].to_numpy(dtype=np.float64)
    inside = (features["bb_upper"].to_numpy() < features["kc_upper"].to_numpy()) & (
        features["bb_lower"].to_numpy() > features["kc_lower"].to_numpy()
    )
    return width, inside


def bollinger_squeeze(
    features: pd.DataFrame, *, lookback: int = 120, threshold: float = 0.1, require_keltner: bool = False
) -> SqueezeResult:
    """Squeeze state at the last row of a :func:`~triplegain_core.analysis.indicators.feature_frame`.

    ValueError when the last width or the ``lookback`` widths before it are not all known.
    """
    if lookback < 2 or not 0.0 <= threshold <= 1.0:
        raise ValueError("lookback must be >= 2 and threshold in 0..1")
    width, inside = _squeeze_inputs(features)
    if len(width) < lookback + 1 or not np.all(np.isfinite(width[-lookback - 1 :])):
        raise ValueError(f"need {lookback + 1} known band widths, have {int(np.isfinite(width).sum())}")
    current = float(width[-1])
    percentile = float(np.count_nonzero(width[-lookback - 1 : -1] < current) / lookback)
    in_keltner = bool(inside[-1])
    squeezed = percentile <= threshold and (in_keltner or not require_keltner)
    return SqueezeResult(
        is_squeeze=squeezed, bb_width=current, width_percentile=percentile, threshold=threshold,
        inside_keltner=in_keltner, require_keltner=require_keltner, lookback=lookback,
    )


def squeeze_series(
    features: pd.DataFrame, *, lookback: int = 120, threshold: float = 0.1, require_keltner: bool = False
) -> pd.Series:
    """:func:`bollinger_squeeze` at every row (False where it is not yet defined)."""
    width, inside = _squeeze_inputs(features)
    flags = np.zeros(len(width), dtype=bool)
    if len(width) > lookback:
        windows = sliding_window_view(width, lookback + 1)
        known = np.isfinite(windows).all(axis=1)
        percentile = (windows[:, :-1] < windows[:, -1:]).sum(axis=1) / lookback
        squeezed = known & (percentile <= threshold)
        if require_keltner:
            squeezed &= inside[lookback:]
        flags[lookback:] = squeezed
    return pd.Series(flags, index=features.index, name="squeeze")


class TrendDirection(StrEnum):
    """EMA stacking on one timeframe, or the agreement across timeframes."""

    UP = "up"
    DOWN = "down"
    MIXED = "mixed"


class TimeframeTrend(BaseModel):
    """EMA9/21/50 stacking on one timeframe."""

    model_config = ConfigDict(frozen=True)

    timeframe: str
    direction: TrendDirection
    ema_9: float
    ema_21: float
    ema_50: float


class TrendAlignment(BaseModel):
    """Whether the EMA stacks agree across timeframes.

    ``direction`` is up (down) only when every timeframe is stacked up (down);
    ``agreement`` is the mean of +1 (up), -1 (down), 0 (mixed or not yet known) per timeframe.
    """

    model_config = ConfigDict(frozen=True)

    timeframes: tuple[TimeframeTrend, ...]
    direction: TrendDirection
    agreement: float = Field(ge=-1.0, le=1.0)

    @property
    def aligned(self) -> bool:
        """True when every timeframe points the same way."""
        return self.direction is not TrendDirection.MIXED


def ema_stack(values: IndicatorValues) -> TrendDirection:
    """Up for EMA9 > EMA21 > EMA50, down for the reverse, mixed otherwise (or while NaN)."""
    fast, mid, slow = values.ema_9, values.ema_21, values.ema_50
    if fast > mid > slow:
        return TrendDirection.UP
    if fast < mid < slow:
        return TrendDirection.DOWN
    return TrendDirection.MIXED


def trend_alignment(values_by_timeframe: Mapping[str, IndicatorValues]) -> TrendAlignment:
    """EMA alignment per timeframe (e.g. 1m, 5m, 15m, 1h) and their agreement."""
    if not values_by_timeframe:
        raise ValueError("no timeframe given")
    trends = tuple(
        TimeframeTrend(timeframe=tf, direction=ema_stack(v), ema_9=v.ema_9, ema_21=v.ema_21, ema_50=v.ema_50)
        for tf, v in values_by_timeframe.items()
    )
    directions = {t.direction for t in trends}
    direction = directions.pop() if len(directions) == 1 else TrendDirection.MIXED
    votes = {TrendDirection.UP: 1.0, TrendDirection.DOWN: -1.0, TrendDirection.MIXED: 0.0}
    agreement = sum(votes[t.direction] for t in trends) / len(trends)
    return TrendAlignment(timeframes=trends, direction=direction, agreement=agreement)


class LevelKind(StrEnum):
    """Where a level sits relative to the last close."""

    SUPPORT = "support"
    RESISTANCE = "resistance"


class PriceLevel(BaseModel):
    """A price zone where swing pivots clustered; ``touches`` pivots fell inside it."""

    model_config = ConfigDict(frozen=True)

    price: float = Field(gt=0.0, description="mean price of the clustered pivots")
    kind: LevelKind
    touches: int = Field(ge=1)
    low: float
    high: float
    first_index: int = Field(ge=0)
    last_index: int = Field(ge=0)


def swing_pivots(high: np.ndarray, low: np.ndarray, window: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Indices of swing highs and swing lows.

    Bar i is a swing high when ``high[i]`` is above the ``window`` highs before it and not
    below the ``window`` highs after it (the first bar of a flat top counts once); swing
    lows mirror this. The last ``window`` bars cannot be pivots yet: nothing looks ahead.
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    n = len(high)
    if n < 2 * window + 1:
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    hw = sliding_window_view(high, 2 * window + 1)
    lw = sliding_window_view(low, 2 * window + 1)
    centre_h, centre_l = hw[:, window], lw[:, window]
    is_high = (centre_h > hw[:, :window].max(axis=1)) & (centre_h >= hw[:, window + 1 :].max(axis=1))
    is_low = (centre_l < lw[:, :window].min(axis=1)) & (centre_l <= lw[:, window + 1 :].min(axis=1))
    return np.flatnonzero(is_high) + window, np.flatnonzero(is_low) + window


def support_resistance(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    *,
    window: int = 3,
    tolerance: float = 0.003,
    min_touches: int = 2,
) -> list[PriceLevel]:
    """Support and resistance levels, ordered by price.

    Swing-high and swing-low prices (:func:`swing_pivots`) are sorted and clustered
    greedily: a pivot joins the current cluster while it is within ``tolerance`` (relative)
    of the cluster's mean, else it starts a new one. A cluster with at least ``min_touches``
    pivots is a level at its mean price: support below the last close, resistance at or
    above it.
    """
    high, low, close = (np.asarray(a, dtype=np.float64) for a in (high, low, close))
    if not (len(high) == len(low) == len(close)) or len(close) == 0:
        raise ValueError("high, low and close must be non-empty and of one length")
    if tolerance <= 0.0 or min_touches < 1:
        raise ValueError("tolerance must be > 0 and min_touches >= 1")
    highs, lows = swing_pivots(high, low, window)
    prices = np.concatenate([high[highs], low[lows]])
    indices = np.concatenate([highs, lows])
    keep = np.isfinite(prices) & (prices > 0.0)
    prices, indices = prices[keep], indices[keep]
    order = np.argsort(prices, kind="stable")
    last_close = float(close[-1])
    levels: list[PriceLevel] = []
    cluster: list[int] = []
    total = 0.0
    for position in order:
        price = float(prices[position])
        if cluster and price - total / len(cluster) > tolerance * total / len(cluster):
            _close_cluster(cluster, prices, indices, last_close, min_touches, levels)
            cluster, total = [], 0.0
        cluster.append(int(position))
        total += price
    if cluster:
        _close_cluster(cluster, prices, indices, last_close, min_touches, levels)
    return levels


def _close_cluster(
    cluster: list[int], prices: np.ndarray, indices: np.ndarray, last_close: float, min_touches: int,
    levels: list[PriceLevel],
) -> None:
    if len(cluster) < min_touches:
        return
    members = prices[cluster]
    where = indices[cluster]
    mean = float(members.mean())
    if not math.isfinite(mean):
        return
    levels.append(PriceLevel(
        price=mean, kind=LevelKind.SUPPORT if mean < last_close else LevelKind.RESISTANCE,
        touches=len(cluster), low=float(members.min()), high=float(members.max()),
        first_index=int(where.min()), last_index=int(where.max()),
    ))
