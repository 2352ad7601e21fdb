"""The ML dataset: features known at each close, forward-return labels, and no row that sees its future."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from triplegain_core.analysis.indicators import FEATURE_NAMES
from triplegain_core.analysis.ml_dataset import ml_dataset, write_ml_dataset

HORIZONS = (1, 5, 15)


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> pd.DataFrame:
    frame = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet").rename(columns={"ts": "open_time"})
    return frame[["open_time", "open", "high", "low", "close", "volume"]].iloc[:1500].reset_index(drop=True)


def _labels() -> list[str]:
    return [f"fwd_return_{h}" for h in HORIZONS]


def test_each_row_holds_the_indicators_the_regime_the_patterns_and_its_forward_returns(candles) -> None:
    frame = ml_dataset(candles, "1m", HORIZONS)
    assert len(frame) == len(candles)
    assert {*FEATURE_NAMES, "regime", "regime_score", "volatility", "ema_stack", "squeeze", *_labels()} <= set(
        frame.columns)
    close = frame["close"].to_numpy()
    assert frame["fwd_return_5"].iloc[100] == pytest.approx(close[105] / close[100] - 1)
    assert frame["fwd_return_15"].iloc[-15:].isna().all() and frame["fwd_return_15"].iloc[:-15].notna().all()
    warm = frame.iloc[200:]
    assert warm["regime"].isin(["bull", "bear", "sideways"]).all() and pd.isna(frame["regime"].iloc[0])
    five = ml_dataset(candles, "5m", HORIZONS)
    assert (five["open_time"].dt.minute % 5 == 0).all() and five["open_time"].is_monotonic_increasing


@pytest.mark.parametrize("timeframe", ["1m", "5m"])
def test_changing_a_future_candle_never_changes_a_past_row(candles, timeframe: str) -> None:
    before = ml_dataset(candles, timeframe, HORIZONS)
    changed = candles.copy()
    at = 1000
    # A crash at one minute and everything after it shifted: the past must not move.
    changed.loc[at:, ["open", "high", "low", "close"]] *= 0.8
    changed.loc[at, "volume"] *= 50
    after = ml_dataset(changed, timeframe, HORIZONS)
    span = pd.Timedelta(minutes=1 if timeframe == "1m" else 5)
    # The first row whose candle holds the changed minute.
    first_changed = int((before["open_time"] + span > candles["open_time"].iloc[at]).to_numpy().argmax())
    features = [c for c in before.columns if not c.startswith("fwd_return_")]
    pd.testing.assert_frame_equal(before[features].iloc[:first_changed], after[features].iloc[:first_changed])
    for horizon in HORIZONS:
        column = f"fwd_return_{horizon}"
        kept = first_changed - horizon  # labels whose horizon ends before the change
        pd.testing.assert_series_equal(before[column].iloc[:kept], after[column].iloc[:kept])
        assert not np.allclose(before[column].iloc[kept:first_changed], after[column].iloc[kept:first_changed])
    assert not before[features].iloc[first_changed:].equals(after[features].iloc[first_changed:])


def test_a_dataset_is_written_to_parquet_per_symbol_and_timeframe(candles, tmp_path: Path) -> None:
    frame = ml_dataset(candles.iloc[:300], "1m", HORIZONS)
    path = write_ml_dataset(frame, tmp_path, "XRP/USDT", "1m")
    assert path.name == "XRP-USDT_1m.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)
    with pytest.raises(ValueError, match="horizons are whole candles ahead"):
        ml_dataset(candles, "1m", (0, 5))
