"""PatternRecognizer pieces: squeeze, multi-timeframe trend alignment, support/resistance."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from triplegain_core.analysis.indicators import (
    FEATURE_NAMES,
    IndicatorValues,
    feature_frame,
    multi_timeframe_feature_frames,
    values_at,
)
from triplegain_core.analysis.patterns import (
    LevelKind,
    TrendDirection,
    bollinger_squeeze,
    ema_stack,
    squeeze_series,
    support_resistance,
    swing_pivots,
    trend_alignment,
)


def _candles(close: np.ndarray, wick: np.ndarray) -> pd.DataFrame:
    open_ = np.concatenate([close[:1], close[:-1]])
    return pd.DataFrame({
        "ts": pd.date_range("2024-01-01", periods=len(close), freq="1min", tz="UTC"),
        "open": open_, "high": np.maximum(open_, close) + wick, "low": np.minimum(open_, close) - wick,
        "close": close, "volume": np.full(len(close), 100.0),
    })


def volatile_then_quiet(quiet_bars: int, seed: int = 0) -> pd.DataFrame:
    """300 noisy bars (1% moves) then ``quiet_bars`` ever calmer ones (0.2% down to 0.02%)."""
    rng = np.random.default_rng(seed)
    calming = np.linspace(0.002, 0.0002, quiet_bars)
    noise = np.concatenate([rng.normal(0, 0.01, 300), rng.normal(0, 1.0, quiet_bars) * calming])
    close = 100 * np.exp(noise)  # mean-reverting around 100
    wick = np.concatenate([np.full(300, 0.5), np.full(quiet_bars, 0.5)])
    return _candles(close, wick)


def test_squeeze_after_volatility_dries_up() -> None:
    features = feature_frame(volatile_then_quiet(60))
    result = bollinger_squeeze(features, lookback=120, threshold=0.1)
    assert result.is_squeeze
    assert result.width_percentile <= 0.05  # among the narrowest bands of the window
    assert result.bb_width == features["bb_width"].iloc[-1]
    # The wicks keep the ATR, hence the Keltner channel, wide: the bands sit inside it.
    assert result.inside_keltner
    assert bollinger_squeeze(features, require_keltner=True).is_squeeze


def test_no_squeeze_while_volatile() -> None:
    features = feature_frame(volatile_then_quiet(0))
    result = bollinger_squeeze(features, lookback=120, threshold=0.1)
    assert not result.is_squeeze and result.width_percentile > 0.1


def test_keltner_requirement_can_veto() -> None:
    rng = np.random.default_rng(1)
    # A slow, small swing without wicks: narrow Bollinger bands, yet wider than the Keltner
    # channel, whose ATR only sees the tiny bar-to-bar steps.
    swing = 0.001 * np.sin(2 * np.pi * np.arange(60) / 40)
    noise = np.concatenate([rng.normal(0, 0.01, 300), swing])
    features = feature_frame(_candles(100 * np.exp(noise), np.zeros(360)))
    assert bollinger_squeeze(features).is_squeeze
    result = bollinger_squeeze(features, require_keltner=True)
    assert not result.inside_keltner and not result.is_squeeze


def test_squeeze_needs_enough_known_widths() -> None:
    features = feature_frame(volatile_then_quiet(0).iloc[:100])
    with pytest.raises(ValueError, match="band widths"):
        bollinger_squeeze(features, lookback=120)
    with pytest.raises(ValueError, match="lack columns"):
        bollinger_squeeze(features.drop(columns="kc_upper"))


def test_squeeze_series_matches_pointwise_on_real_candles(shared_data: Path) -> None:
    frame = pd.read_parquet(shared_data / "binance_xrp-usdt-perp_5m.parquet")
    features = feature_frame(frame)
    flags = squeeze_series(features, lookback=120, threshold=0.1, require_keltner=True)
    assert flags.index.equals(features.index)
    assert 0 < flags.sum() < len(flags) / 2
    first_defined = 19 + 120  # BBANDS(20) warm-up, then 120 earlier widths
    assert not flags.iloc[:first_defined].any()
    for end in range(first_defined + 1, len(features) + 1, 37):
        result = bollinger_squeeze(features.iloc[:end], lookback=120, threshold=0.1, require_keltner=True)
        assert result.is_squeeze == flags.iloc[end - 1]
        assert result.is_squeeze == (result.width_percentile <= 0.1 and result.inside_keltner)


def _values(**emas: float) -> IndicatorValues:
    values = dict.fromkeys(FEATURE_NAMES, 1.0)
    values.update(emas)
    return IndicatorValues(**values)


UP = _values(ema_9=3.0, ema_21=2.0, ema_50=1.0)
DOWN = _values(ema_9=1.0, ema_21=2.0, ema_50=3.0)
TANGLED = _values(ema_9=2.0, ema_21=3.0, ema_50=1.0)


def test_ema_stack() -> None:
    assert ema_stack(UP) is TrendDirection.UP
    assert ema_stack(DOWN) is TrendDirection.DOWN
    assert ema_stack(TANGLED) is TrendDirection.MIXED
    assert ema_stack(dataclasses.replace(UP, ema_50=math.nan)) is TrendDirection.MIXED


def test_trend_alignment_across_timeframes() -> None:
    aligned = trend_alignment({"1m": UP, "5m": UP, "15m": UP, "1h": UP})
    assert aligned.aligned and aligned.direction is TrendDirection.UP and aligned.agreement == 1.0
    assert [t.timeframe for t in aligned.timeframes] == ["1m", "5m", "15m", "1h"]
    down = trend_alignment({"1m": DOWN, "5m": DOWN, "15m": DOWN, "1h": DOWN})
    assert down.direction is TrendDirection.DOWN and down.agreement == -1.0
    split = trend_alignment({"1m": UP, "5m": UP, "15m": DOWN, "1h": TANGLED})
    assert not split.aligned and split.direction is TrendDirection.MIXED
    assert split.agreement == pytest.approx(0.25)
    all_mixed = trend_alignment({"1m": TANGLED, "5m": TANGLED})
    assert not all_mixed.aligned and all_mixed.agreement == 0.0
    with pytest.raises(ValueError):
        trend_alignment({})


def test_trend_alignment_on_a_steady_1m_uptrend() -> None:
    rng = np.random.default_rng(5)
    minutes = 60 * 60  # 60 hours: enough 1h candles for EMA50
    close = 100 * np.exp(0.0002 * np.arange(minutes) + rng.normal(0, 0.0005, minutes))
    frames = multi_timeframe_feature_frames(_candles(close, np.full(minutes, 0.01)))
    result = trend_alignment({tf: values_at(frame) for tf, frame in frames.items()})
    assert result.direction is TrendDirection.UP and result.aligned


def triangle(cycles: int = 6, period: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A zig-zag between 100 and 110: lows at t = 10 + 20k, highs at t = 20k."""
    t = np.arange(cycles * period + 5)
    close = 100 + 10 * np.abs((t % period) - period / 2) / (period / 2)
    return close + 0.05, close - 0.05, close


def test_swing_pivots_of_a_zigzag() -> None:
    high, low, _ = triangle()
    highs, lows = swing_pivots(high, low, window=3)
    assert highs.tolist() == [20, 40, 60, 80, 100, 120]
    assert lows.tolist() == [10, 30, 50, 70, 90, 110]
    plateau_high, plateau_low = swing_pivots(np.array([1, 2, 3, 3, 2, 1, 0.0]), np.zeros(7), window=2)
    assert plateau_high.tolist() == [2]  # a flat top counts once
    assert plateau_low.tolist() == []
    short_high, short_low = swing_pivots(np.ones(4), np.ones(4), window=3)
    assert len(short_high) == len(short_low) == 0


def test_support_and_resistance_of_a_zigzag() -> None:
    high, low, close = triangle()
    levels = support_resistance(high, low, close, window=3, tolerance=0.003, min_touches=2)
    assert [(level.kind, level.touches) for level in levels] == [
        (LevelKind.SUPPORT, 6), (LevelKind.RESISTANCE, 6),
    ]
    support, resistance = levels
    assert support.price == pytest.approx(99.95) and resistance.price == pytest.approx(110.05)
    assert (support.first_index, support.last_index) == (10, 110)
    assert (resistance.first_index, resistance.last_index) == (20, 120)


def test_touches_cluster_within_the_tolerance() -> None:
    high, low, close = triangle()
    rng = np.random.default_rng(2)
    jitter = rng.uniform(-0.1, 0.1, len(close))  # 0.1% of the price, inside the 0.3% tolerance
    levels = support_resistance(high + jitter, low + jitter, close, tolerance=0.003)
    assert [level.touches for level in levels] == [6, 6]
    tight = support_resistance(high + jitter, low + jitter, close, tolerance=0.0001, min_touches=1)
    assert len(tight) > 2 and sum(level.touches for level in tight) == 12
    assert support_resistance(high, low, close, min_touches=7) == []
    with pytest.raises(ValueError):
        support_resistance(high, low[:-1], close)


@pytest.mark.parametrize("name", ["binance_xrp-usdt-perp_5m.parquet", "binance_eth-btc_5m.parquet",
                                  "binance_alt-btc_1m.parquet"])
def test_support_resistance_invariants_on_real_candles(shared_data: Path, name: str) -> None:
    frame = pd.read_parquet(shared_data / name)
    high, low, close = (frame[c].to_numpy() for c in ("high", "low", "close"))
    tolerance = 0.003
    levels = support_resistance(high, low, close, window=3, tolerance=tolerance, min_touches=2)
    highs, lows = swing_pivots(high, low, 3)
    assert levels
    assert sum(level.touches for level in levels) <= len(highs) + len(lows)
    prices = [level.price for level in levels]
    assert prices == sorted(prices)
    for below, above in itertools.pairwise(levels):
        assert above.low > below.price * (1 + tolerance)  # distinct levels do not overlap
    for level in levels:
        assert level.touches >= 2
        assert level.low <= level.price <= level.high
        assert level.high - level.low <= 2 * tolerance * level.high * level.touches
        assert 0 <= level.first_index <= level.last_index < len(close) - 3
        assert (level.kind is LevelKind.SUPPORT) == (level.price < close[-1])
    assert {level.kind for level in levels} == {LevelKind.SUPPORT, LevelKind.RESISTANCE}
