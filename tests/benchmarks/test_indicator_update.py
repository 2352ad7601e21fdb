"""BENCH indicator_update_us: one incremental update of the whole indicator set (38 series)
for one symbol/timeframe; BENCH mtf_indicator_update_us: one 1m candle through the 1m, 5m,
15m and 1h sets (resampling included)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from triplegain_core.analysis.incremental_indicators import IncrementalIndicators, MultiTimeframeIndicators
from triplegain_core.analysis.indicators import FEATURE_NAMES, FEATURE_WARMUP, feature_frame
from triplegain_core.model.market import Candle, datetime_to_us


def _candles(frame: pd.DataFrame, symbol: str, timeframe: str) -> list[Candle]:
    return [
        Candle(symbol, timeframe, datetime_to_us(r.ts.to_pydatetime()),
               r.open, r.high, r.low, r.close, r.volume, 0)
        for r in frame.itertuples()
    ]


def test_indicator_update_us(shared_data: Path) -> None:
    frame = pd.read_parquet(shared_data / "binance_xrp-usdt-perp_5m.parquet")
    candles = _candles(frame, "XRP/USDT", "5m")
    indicators = IncrementalIndicators("XRP/USDT", "5m")
    for candle in candles[:FEATURE_WARMUP]:
        indicators.update(candle)
    timings = []
    for candle in candles[FEATURE_WARMUP:]:
        started = time.perf_counter_ns()
        indicators.update(candle)
        timings.append(time.perf_counter_ns() - started)
    last = indicators.last
    assert last is not None and last.is_complete
    expected = feature_frame(frame).iloc[-1].to_numpy()
    np.testing.assert_array_equal([getattr(last.values, n) for n in FEATURE_NAMES], expected)
    print(f"\nBENCH indicator_update_us {statistics.median(timings) / 1000:.1f} us")
    print(f"BENCH indicator_update_p99_us {np.percentile(timings, 99) / 1000:.1f} us")
    print(f"BENCH indicator_update_series {len(FEATURE_NAMES)} series")


def test_mtf_indicator_update_us(shared_data: Path) -> None:
    frame = pd.read_parquet(shared_data / "binance_alt-btc_1m.parquet")
    candles = _candles(frame, "XRP/BTC", "1m")
    indicators = MultiTimeframeIndicators("XRP/BTC")
    started = time.perf_counter()
    for candle in candles:
        indicators.update(candle)
    elapsed = time.perf_counter() - started
    assert indicators.rejected == 0
    print(f"\nBENCH mtf_indicator_update_us {elapsed / len(candles) * 1e6:.1f} us")
