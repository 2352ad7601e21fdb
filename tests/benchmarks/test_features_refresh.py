"""BENCH features_full_s and features_incremental_s: the `indicator_features` asset computing a
history of three pairs from nothing, then refreshing after one new day.

``FEATURES_BENCH_DAYS`` (default 30) days of seeded random-walk 1m candles per pair are stored
and every day-and-pair partition materialized, one run each as a backfill would; then one more
day is stored and its three partitions materialized: each reads its warm-up and its day only,
so the refresh costs a day, not the history.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import psycopg

from triplegain_core.model.market import US_PER_MINUTE, Candle, datetime_to_us
from triplegain_core.storage.market_store import MarketStore
from triplegain_dagster.defs.features.indicators import indicator_features
from triplegain_dagster.resources import PostgresResource

PRICES = {"BTC/USDT": 60_000.0, "XRP/USDT": 0.5, "XRP/BTC": 0.5 / 60_000.0}
DAY_MINUTES = 24 * 60
START_US = datetime_to_us(datetime(2026, 1, 1, tzinfo=UTC))


def _candles(days: int) -> list[Candle]:
    minutes = days * DAY_MINUTES
    rng = np.random.default_rng(5)
    candles = []
    for symbol, start in PRICES.items():
        closes = start * np.exp(np.cumsum(rng.normal(0, 0.0008, minutes)))
        opens = np.concatenate([[start], closes[:-1]])
        candles += [Candle(symbol, "1m", START_US + i * US_PER_MINUTE, float(o), float(max(o, c) * 1.0003),
                           float(min(o, c) * 0.9997), float(c), 10.0, 5)
                    for i, (o, c) in enumerate(zip(opens, closes, strict=True))]
    return candles


def _timed_partitions(resources: dict[str, object], days: list[str]) -> tuple[float, int]:
    """Seconds and rows written materializing every pair's partition of ``days``."""
    started = time.perf_counter()
    rows = 0
    for day in days:
        for symbol in PRICES:
            result = dg.materialize([indicator_features], resources=resources, partition_key=f"{day}|{symbol}")
            [event] = result.asset_materializations_for_node("indicator_features")
            rows += int(event.metadata["rows_written"].value)
    return time.perf_counter() - started, rows


def test_features_incremental_against_full(database_url: str, db: psycopg.Connection, tmp_path: Path) -> None:
    days = int(os.environ.get("FEATURES_BENCH_DAYS", "30"))
    dates = [(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=n)).strftime("%Y-%m-%d") for n in range(days + 1)]
    candles = _candles(days + 1)
    history_end_us = START_US + days * DAY_MINUTES * US_PER_MINUTE
    store = MarketStore(db)
    store.write_candles([c for c in candles if c.open_time_us < history_end_us])
    resources = {"postgres": PostgresResource(database_url=database_url, data_dir=str(tmp_path))}
    full_s, full_rows = _timed_partitions(resources, dates[:-1])
    store.write_candles([c for c in candles if c.open_time_us >= history_end_us])
    incremental_s, incremental_rows = _timed_partitions(resources, dates[-1:])
    assert incremental_rows == 3 * DAY_MINUTES  # the new day only
    print(f"\nfeatures: {days} days x 3 pairs ({full_rows:,} rows, {3 * days} partitions) from nothing, then"
          f" one more day ({incremental_rows:,} rows, 3 partitions)")
    print(f"BENCH features_full_s {full_s:.2f} s")
    print(f"BENCH features_incremental_s {incremental_s:.2f} s")
