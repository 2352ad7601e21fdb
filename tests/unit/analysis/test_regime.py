"""RegimeDetector: synthetic trends and ranges, every weight matters, volatility states."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from triplegain_core.analysis.indicators import FEATURE_NAMES, FEATURE_WARMUP, IndicatorValues, feature_frame
from triplegain_core.analysis.regime import (
    MarketRegime,
    RegimeConfig,
    RegimeDetector,
    RegimeWeights,
    VolatilityState,
)

COMPONENTS = ("adx", "choppiness", "ma_alignment", "rsi_momentum", "volume")


def synthetic(drift: float, noise: float = 0.004, n: int = 400, seed: int = 1) -> pd.DataFrame:
    """5m candles whose log price is ``drift * t`` plus independent noise (flat when drift is 0)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(drift * np.arange(n) + rng.normal(0, noise, n))
    open_ = np.concatenate([[100.0], close[:-1]])
    wick = np.abs(rng.normal(0, noise, n)) * close
    return pd.DataFrame({
        "ts": pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC"),
        "open": open_, "high": np.maximum(open_, close) + wick, "low": np.minimum(open_, close) - wick,
        "close": close, "volume": rng.uniform(50, 150, n),
    })


def _with_features(candles: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([candles, feature_frame(candles)], axis=1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("drift", "expected"), [
    (0.002, MarketRegime.BULL), (-0.002, MarketRegime.BEAR), (0.0, MarketRegime.SIDEWAYS),
])
def test_synthetic_regimes(drift: float, expected: MarketRegime, seed: int) -> None:
    result = RegimeDetector().detect_frame(_with_features(synthetic(drift, seed=seed)))
    assert result.regime is expected
    if expected is MarketRegime.BULL:
        assert result.score >= 0.5
    elif expected is MarketRegime.BEAR:
        assert result.score <= -0.5
    else:
        assert abs(result.score) < 0.25


def neutral() -> IndicatorValues:
    """Values giving every component a score of 0 at a close of 100."""
    values = dict.fromkeys(FEATURE_NAMES, 1.0)
    values.update(adx_14=10.0, plus_di_14=20.0, minus_di_14=20.0, chop_14=70.0, ema_9=100.0, ema_21=100.0,
                  ema_50=100.0, atr_14=1.0, natr_14=1.0, rsi_14=50.0, volume_ratio=1.0, roc_10=0.0)
    return IndicatorValues(**values)


# For each component, the values that make it (and only it) fully bullish.
ONLY = {
    "adx": {"adx_14": 50.0, "plus_di_14": 30.0, "minus_di_14": 10.0},
    "choppiness": {"chop_14": 30.0, "ema_21": 100.5, "ema_9": 100.5},  # with close 100: stack signs sum to 0
    "ma_alignment": {"ema_9": 102.0, "ema_21": 101.0, "ema_50": 99.0, "chop_14": 70.0},
    "rsi_momentum": {"rsi_14": 75.0},
    "volume": {"volume_ratio": 3.0, "roc_10": 1.5},
}
CLOSE = {"ma_alignment": 103.0}


def test_default_weights_are_the_issues() -> None:
    assert RegimeWeights().model_dump() == {
        "adx": 0.25, "choppiness": 0.20, "ma_alignment": 0.20, "rsi_momentum": 0.15, "volume": 0.10,
        "sentiment": 0.10,
    }


def test_neutral_values_score_zero() -> None:
    result = RegimeDetector().detect(neutral(), 100.0)
    assert result.score == 0.0 and result.regime is MarketRegime.SIDEWAYS
    assert all(c.contribution == 0.0 for c in result.components)


@pytest.mark.parametrize("name", COMPONENTS)
def test_each_component_carries_its_weight(name: str) -> None:
    weights = RegimeWeights()
    values = dataclasses.replace(neutral(), **ONLY[name])
    close = CLOSE.get(name, 100.0)
    result = RegimeDetector().detect(values, close)
    share = getattr(weights, name) / 0.9  # sentiment absent: renormalized over 90%
    assert result.score == pytest.approx(share)
    assert result.component(name).contribution == pytest.approx(share)
    assert result.component(name).score == pytest.approx(1.0)
    others = [c for c in result.components if c.name != name]
    assert all(c.contribution == 0.0 for c in others)
    # With a (neutral) sentiment present nothing is renormalized: the share is the weight.
    with_sentiment = RegimeDetector().detect(values, close, sentiment=0.0)
    assert with_sentiment.score == pytest.approx(getattr(weights, name))
    # With its weight set to zero, the same evidence no longer moves the score.
    silenced = RegimeDetector(RegimeConfig(weights=weights.model_copy(update={name: 0.0})))
    assert silenced.detect(values, close).score == 0.0


def test_each_component_can_decide_the_regime() -> None:
    for name in COMPONENTS:
        values = dataclasses.replace(neutral(), **ONLY[name])
        detector = RegimeDetector(RegimeConfig(threshold=getattr(RegimeWeights(), name) / 0.9 - 1e-9))
        assert detector.detect(values, CLOSE.get(name, 100.0)).regime is MarketRegime.BULL, name


def test_bearish_components_mirror_bullish_ones() -> None:
    bear = dataclasses.replace(neutral(), adx_14=50.0, plus_di_14=10.0, minus_di_14=30.0, rsi_14=25.0)
    result = RegimeDetector().detect(bear, 100.0)
    assert result.component("adx").score == -1.0 and result.component("rsi_momentum").score == -1.0
    assert result.score == pytest.approx(-(0.25 + 0.15) / 0.9)
    assert result.regime is MarketRegime.BEAR


def test_sentiment_is_weighted_and_its_absence_is_reported() -> None:
    detector = RegimeDetector()
    with_sentiment = detector.detect(neutral(), 100.0, sentiment=1.0)
    assert with_sentiment.sentiment_used and with_sentiment.note is None
    assert with_sentiment.score == pytest.approx(0.10)
    assert sum(c.effective_weight for c in with_sentiment.components) == pytest.approx(1.0)
    without = detector.detect(neutral(), 100.0)
    assert not without.sentiment_used
    assert without.note is not None and "renormalized" in without.note
    assert [c.name for c in without.components] == list(COMPONENTS)
    assert sum(c.effective_weight for c in without.components) == pytest.approx(1.0)
    assert without.component("adx").effective_weight == pytest.approx(0.25 / 0.9)
    with pytest.raises(KeyError):
        without.component("sentiment")
    with pytest.raises(ValueError, match="sentiment"):
        detector.detect(neutral(), 100.0, sentiment=1.5)


@pytest.mark.parametrize(("natr", "state"), [
    (10.0, VolatilityState.LOW), (50.0, VolatilityState.NORMAL), (80.0, VolatilityState.HIGH),
    (99.5, VolatilityState.EXTREME),
])
def test_volatility_state_from_atr_percentile(natr: float, state: VolatilityState) -> None:
    history = np.arange(1.0, 101.0)
    result = RegimeDetector().detect(dataclasses.replace(neutral(), natr_14=natr), 100.0,
                                     volatility_history=history)
    assert result.volatility is state
    assert result.volatility_percentile == pytest.approx(np.mean(history < natr))


def test_volatility_unknown_with_short_history() -> None:
    history = [1.0] * 10 + [math.nan] * 100
    result = RegimeDetector().detect(neutral(), 100.0, volatility_history=history)
    assert result.volatility is VolatilityState.UNKNOWN and result.volatility_percentile is None


def test_warming_up_values_are_refused() -> None:
    with pytest.raises(ValueError, match="adx_14"):
        RegimeDetector().detect(dataclasses.replace(neutral(), adx_14=math.nan), 100.0)
    with pytest.raises(ValueError, match="close"):
        RegimeDetector().detect(neutral(), math.nan)
    frame = _with_features(synthetic(0.001))
    with pytest.raises(ValueError, match="warming up"):
        RegimeDetector().detect_frame(frame.iloc[:30])
    with pytest.raises(ValueError, match="lacks"):
        RegimeDetector().detect_frame(frame.drop(columns="vpin"))


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError):
        RegimeWeights(adx=0, choppiness=0, ma_alignment=0, rsi_momentum=0, volume=0)
    with pytest.raises(ValidationError):
        RegimeConfig(adx_floor=40.0, adx_full=30.0)
    with pytest.raises(ValidationError):
        RegimeWeights(adx=-0.1)


@pytest.mark.parametrize("name", ["binance_xrp-usdt-perp_5m.parquet", "binance_eth-btc_5m.parquet"])
def test_real_candles_invariants(shared_data: Path, name: str) -> None:
    frame = _with_features(pd.read_parquet(shared_data / name))
    detector = RegimeDetector()
    seen = set()
    for end in range(FEATURE_WARMUP + 60, len(frame), 50):
        result = detector.detect_frame(frame.iloc[:end])
        seen.add(result.regime)
        assert -1.0 <= result.score <= 1.0
        assert result.score == pytest.approx(sum(c.contribution for c in result.components))
        assert all(-1.0 <= c.score <= 1.0 for c in result.components)
        assert result.volatility is not VolatilityState.UNKNOWN
        assert result.natr == frame["natr_14"].iloc[end - 1]
    assert len(seen) >= 2  # real markets are not one regime for weeks
