"""Incremental indicators equal the batch ones after every candle; resampling one candle at
a time equals batch resampling; bad candles are rejected without touching the state."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triplegain_core.analysis.incremental_indicators import (
    IncrementalIndicators,
    MultiTimeframeIndicators,
    candle_problem,
)
from triplegain_core.analysis.indicators import (
    FEATURE_NAMES,
    FEATURE_WARMUP,
    feature_frame,
    multi_timeframe_feature_frames,
)
from triplegain_core.marketdata.timeframes import CandleResampler, resample_candles
from triplegain_core.model.market import US_PER_MINUTE, Candle, datetime_to_us

REAL_FILES = [
    ("binance_xrp-usdt-perp_5m.parquet", "5m"),
    ("binance_eth-btc_5m.parquet", "5m"),
    ("binance_alt-btc_1m.parquet", "1m"),  # gaps, flat candles, sub-cent prices
]


def _candles(frame: pd.DataFrame, symbol: str, timeframe: str) -> list[Candle]:
    return [
        Candle(symbol, timeframe, datetime_to_us(r.ts.to_pydatetime()),
               r.open, r.high, r.low, r.close, r.volume, 0)
        for r in frame.itertuples()
    ]


def _feed(candles: list[Candle]) -> np.ndarray:
    """The incremental values after each candle, one row per candle, FEATURE_NAMES columns."""
    first = candles[0]
    indicators = IncrementalIndicators(first.symbol, first.timeframe)
    rows = []
    for candle in candles:
        snapshot = indicators.update(candle)
        assert snapshot is not None
        rows.append([getattr(snapshot.values, name) for name in FEATURE_NAMES])
    return np.array(rows, dtype=np.float64).reshape(len(candles), len(FEATURE_NAMES))


def _assert_same(incremental: np.ndarray, batch: np.ndarray) -> None:
    """Same NaN (warm-up) positions and values equal to 1e-9 relative everywhere else."""
    for column, name in enumerate(FEATURE_NAMES):
        np.testing.assert_allclose(incremental[:, column], batch[:, column], rtol=1e-9, atol=0.0,
                                   equal_nan=True, err_msg=name)


@pytest.fixture(scope="module", params=REAL_FILES, ids=[name for name, _ in REAL_FILES])
def real(request: pytest.FixtureRequest, shared_data: Path) -> tuple[pd.DataFrame, list[Candle]]:
    name, timeframe = request.param
    frame = pd.read_parquet(shared_data / name)
    return frame, _candles(frame, "XRP/BTC", timeframe)


def test_fed_from_the_start_equals_batch_after_every_candle(real: tuple[pd.DataFrame, list[Candle]]) -> None:
    frame, candles = real
    incremental = _feed(candles)
    batch = feature_frame(frame).to_numpy()
    _assert_same(incremental, batch)
    # Beyond the 1e-9 the issue asks: TA-Lib's streams are bit-identical to its batch.
    np.testing.assert_array_equal(incremental, batch)
    assert np.isfinite(incremental[FEATURE_WARMUP - 1 :]).all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_window_of_real_candles_fed_from_its_start_equals_batch(
    shared_data: Path, data: st.DataObject
) -> None:
    name, timeframe = data.draw(st.sampled_from(REAL_FILES))
    frame = pd.read_parquet(shared_data / name)
    start = data.draw(st.integers(0, len(frame) - 2))
    length = data.draw(st.integers(1, min(400, len(frame) - start)))
    window = frame.iloc[start : start + length].reset_index(drop=True)
    _assert_same(_feed(_candles(window, "XRP/USDT", timeframe)), feature_frame(window).to_numpy())


@st.composite
def candle_series(draw: st.DrawFn) -> pd.DataFrame:
    """Random but sound OHLCV: any price scale, flat stretches, zero volumes, gaps in time."""
    n = draw(st.integers(1, 260))
    scale = draw(st.sampled_from([1e-5, 0.07, 1.0, 30_000.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    flat = draw(st.booleans())
    returns = rng.normal(0, 0.01, n) * (rng.random(n) > 0.5 if flat else 1.0)
    close = scale * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = rng.exponential(0.003, (2, n)) * close * (rng.random(n) > 0.3)
    high = np.maximum(open_, close) + wick[0]
    low = np.minimum(open_, close) - np.minimum(wick[1], np.minimum(open_, close) * 0.5)
    volume = rng.exponential(100.0, n) * (rng.random(n) > draw(st.sampled_from([0.0, 0.2, 0.9])))
    # Some gaps; 27,000,000 minutes is a UTC midnight, so most series cross a VWAP session.
    minutes = np.cumsum(rng.integers(1, 4, n)) + 27_000_000 - draw(st.integers(0, 600))
    ts = pd.to_datetime(minutes * US_PER_MINUTE, unit="us", utc=True)
    return pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume})


@settings(max_examples=60, deadline=None)
@given(frame=candle_series())
def test_random_candles_incremental_equals_batch(frame: pd.DataFrame) -> None:
    _assert_same(_feed(_candles(frame, "XRP/USDT", "1m")), feature_frame(frame).to_numpy())


def test_rejected_candles_leave_the_state_untouched(shared_data: Path) -> None:
    frame = pd.read_parquet(shared_data / "binance_xrp-usdt-perp_5m.parquet").iloc[:150]
    candles = _candles(frame, "XRP/USDT", "5m")
    clean = IncrementalIndicators("XRP/USDT", "5m")
    dirty = IncrementalIndicators("XRP/USDT", "5m")
    bad_ones = 0
    for i, candle in enumerate(candles):
        expected = clean.update(candle)
        if i % 10 == 5:
            for bad in (
                dataclasses.replace(candle, close=float("nan")),
                dataclasses.replace(candle, high=candle.low * 0.5),
                dataclasses.replace(candle, volume=-1.0),
                dataclasses.replace(candle, low=0.0),
                dataclasses.replace(candle, symbol="BTC/USDT"),
                dataclasses.replace(candle, timeframe="1m"),
            ):
                assert dirty.update(bad) is None
                bad_ones += 1
        got = dirty.update(candle)
        assert got is not None and expected is not None
        assert got.open_time_us == expected.open_time_us
        np.testing.assert_array_equal(list(got.values.as_dict().values()),
                                      list(expected.values.as_dict().values()))
        assert dirty.update(candle) is None  # the same candle again: not after the previous one
        bad_ones += 1
    assert dirty.rejected == bad_ones and clean.rejected == 0
    assert dirty.updates == clean.updates == len(candles)


def test_candle_problem_names_the_fault() -> None:
    good = Candle("XRP/USDT", "1m", 0, 1.0, 1.2, 0.9, 1.1, 10.0, 3)
    assert candle_problem(good) is None
    assert "high/low" in (candle_problem(dataclasses.replace(good, low=1.05)) or "")
    assert "non-finite" in (candle_problem(dataclasses.replace(good, volume=float("inf"))) or "")


def test_snapshot_is_typed_and_complete_after_warmup(shared_data: Path) -> None:
    frame = pd.read_parquet(shared_data / "binance_eth-btc_5m.parquet").iloc[:FEATURE_WARMUP]
    indicators = IncrementalIndicators("XRP/BTC", "5m")
    snapshots = [indicators.update(c) for c in _candles(frame, "XRP/BTC", "5m")]
    assert all(s is not None for s in snapshots)
    assert not snapshots[-2].is_complete and snapshots[-1].is_complete
    last = snapshots[-1]
    assert IncrementalIndicators("XRP/BTC", "5m").feed(_candles(frame, "XRP/BTC", "5m")) == last
    assert last is indicators.last and last.close == frame["close"].iloc[-1]
    assert list(last.values.as_dict()) == list(FEATURE_NAMES)


# --- Resampling one candle at a time ---------------------------------------------------


Row = tuple[int, float, float, float, float, float]


def _resample_incrementally(candles: list[Candle], timeframe: str) -> list[Row]:
    resampler = CandleResampler(candles[0].symbol, timeframe)
    closed = [bar for candle in candles for bar in resampler.add(candle)]
    assert all(bar.timeframe == timeframe for bar in closed)
    return [(c.open_time_us, c.open, c.high, c.low, c.close, c.volume) for c in closed]


def _rows(frame: pd.DataFrame) -> list[Row]:
    open_us = pd.DatetimeIndex(frame["ts"]).as_unit("us").asi8
    return [(int(t), *map(float, r)) for t, r in
            zip(open_us, frame[["open", "high", "low", "close", "volume"]].to_numpy(), strict=True)]


def test_incremental_resampling_equals_the_exchange_5m(shared_data: Path) -> None:
    one = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet")
    five = pd.read_parquet(shared_data / "binance_xrp-eth_5m.parquet")
    assert _resample_incrementally(_candles(one, "XRP/ETH", "1m"), "5m") == _rows(five)


@settings(max_examples=60, deadline=None)
@given(frame=candle_series(), timeframe=st.sampled_from(["5m", "15m", "1h"]))
def test_incremental_resampling_equals_batch(frame: pd.DataFrame, timeframe: str) -> None:
    batch = resample_candles(frame, timeframe)
    assert _resample_incrementally(_candles(frame, "XRP/USDT", "1m"), timeframe) == _rows(batch)


def test_resampler_closes_at_the_last_minute_and_rejects_strays() -> None:
    resampler = CandleResampler("XRP/USDT", "5m")
    minute = US_PER_MINUTE
    bars = [Candle("XRP/USDT", "1m", i * minute, 1.0 + i, 2.0 + i, 0.5, 1.5 + i, 1.0, 2) for i in range(5)]
    assert all(resampler.add(bar) == [] for bar in bars[:4])
    (closed,) = resampler.add(bars[4])
    assert (closed.open, closed.high, closed.low, closed.close, closed.volume, closed.trade_count) == (
        1.0, 6.0, 0.5, 5.5, 5.0, 10)
    assert closed.timeframe == "5m" and closed.open_time_us == 0
    assert resampler.add(bars[4]) == [] and resampler.rejected == 1
    assert resampler.add(dataclasses.replace(bars[0], symbol="BTC/USDT", open_time_us=9 * minute)) == []
    assert resampler.rejected == 2
    with pytest.raises(ValueError):
        CandleResampler("XRP/USDT", "7m")


# --- Multi-timeframe -------------------------------------------------------------------


def test_multi_timeframe_incremental_equals_batch(shared_data: Path) -> None:
    one = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet")
    frames = multi_timeframe_feature_frames(one)
    indicators = MultiTimeframeIndicators("XRP/ETH")
    rows: dict[str, list[list[float]]] = {tf: [] for tf in frames}
    for candle in _candles(one, "XRP/ETH", "1m"):
        snapshot = indicators.update(candle)
        assert snapshot is not None
        for closed in snapshot.closed:
            assert snapshot.latest[closed.timeframe].open_time_us >= closed.open_time_us
            rows[closed.timeframe].append([getattr(closed.values, n) for n in FEATURE_NAMES])
    for timeframe, frame in frames.items():
        _assert_same(np.array(rows[timeframe]), frame[list(FEATURE_NAMES)].to_numpy())
    assert set(snapshot.latest) == {"1m", "5m", "15m", "1h"}
    assert indicators.rejected == 0


def test_multi_timeframe_rejects_bad_source_candles() -> None:
    indicators = MultiTimeframeIndicators("XRP/USDT", ("5m", "15m"))
    good = Candle("XRP/USDT", "1m", 0, 1.0, 1.1, 0.9, 1.0, 5.0, 1)
    assert indicators.update(good) is not None
    assert indicators.update(good) is None
    assert indicators.update(dataclasses.replace(good, open_time_us=US_PER_MINUTE, close=-1.0)) is None
    assert indicators.rejected == 2
