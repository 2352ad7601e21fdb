"""Technical-indicator features of the 1-minute candles, stored in ``indicator_features``."""

import json
import math
from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
import numpy as np
import pandas as pd
import psycopg

from triplegain_core.analysis.indicators import INDICATOR_NAMES, indicator_frame
from triplegain_core.reporting.reports import markdown_table
from triplegain_core.storage.market_store import MarketStore
from triplegain_dagster import groups
from triplegain_dagster.defs.analytics import ANALYTICS_FRESHNESS
from triplegain_dagster.defs.market_data.candles import TIMEFRAME, candles_1m
from triplegain_dagster.resources import PostgresResource

OHLCV = ["open", "high", "low", "close", "volume"]
# Candles read before the first row recomputed: every indicator's memory of older candles
# (exponential and Wilder smoothing, at most 50 periods) has decayed below float precision by
# then, so a refresh computes the same values a full recomputation would.
WARMUP_CANDLES = 1000


def _feature_rows(
    symbol: str, open_times: pd.Series, features: pd.DataFrame
) -> Iterator[tuple[str, str, object, str]]:
    """(symbol, timeframe, open_time, features JSON) per candle with at least one finite value.

    Warm-up rows (all NaN) are left out: JSON has no NaN, and an empty feature set says nothing.
    """
    names = list(features.columns)
    for open_time, values in zip(open_times, features.to_numpy(dtype=float), strict=True):
        finite = {name: float(v) for name, v in zip(names, values, strict=True) if math.isfinite(v)}
        if finite:
            yield symbol, TIMEFRAME, open_time.to_pydatetime(), json.dumps(finite)


def _upsert_features(conn: psycopg.Connection, rows: Iterator[tuple[str, str, object, str]]) -> int:
    """COPY the rows into a staging table, then one upsert on the natural key; returns rows sent."""
    sent = 0
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS indicator_features_stage"
            " (LIKE indicator_features INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cur.copy(
            "COPY indicator_features_stage (symbol, timeframe, open_time, features) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
                sent += 1
        cur.execute(
            "INSERT INTO indicator_features (symbol, timeframe, open_time, features)"
            " SELECT symbol, timeframe, open_time, features FROM indicator_features_stage"
            " ON CONFLICT (symbol, timeframe, open_time) DO UPDATE SET features = EXCLUDED.features"
        )
    return sent


def _format(value: float) -> str:
    return "NaN" if np.isnan(value) else f"{value:.6g}"


@dg.asset(
    group_name=groups.FEATURES,
    freshness_policy=ANALYTICS_FRESHNESS,
    deps=[candles_1m],
    kinds={"postgres"},
    description="TA-Lib indicators of each 1-minute candle (table `indicator_features`, jsonb),"
                " refreshed from the last stored row on.",
)
def indicator_features(
    context: dg.AssetExecutionContext, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Compute each symbol's indicators from its last stored feature row on and upsert them.

    The last stored row is computed again (its candle may still have been forming), over
    ``WARMUP_CANDLES`` candles before it; a symbol without features is computed in full. The
    upsert makes reruns idempotent.
    """
    per_symbol: list[tuple[str, int, int, str]] = []
    last_values: dict[str, pd.Series] = {}
    with postgres.connect() as conn:
        store = MarketStore(conn)
        symbols = [row[0] for row in conn.execute(
            "SELECT DISTINCT symbol FROM candles WHERE timeframe = %s ORDER BY 1", (TIMEFRAME,)
        )]
        for symbol in symbols:
            [(last_stored,)] = conn.execute(
                "SELECT max(open_time) FROM indicator_features WHERE symbol = %s AND timeframe = %s",
                (symbol, TIMEFRAME)).fetchall()
            start = None if last_stored is None else last_stored - WARMUP_CANDLES * timedelta(minutes=1)
            candles = store.read_candles(symbol, TIMEFRAME, start=start)
            features = indicator_frame(candles[OHLCV])
            fresh = candles["open_time"] >= (last_stored if last_stored is not None else candles["open_time"].min())
            written = _upsert_features(conn, _feature_rows(symbol, candles["open_time"][fresh], features[fresh]))
            context.log.info("%s: %d candles read, %d feature rows upserted", symbol, len(candles), written)
            last_open = candles["open_time"].iloc[-1]
            per_symbol.append((symbol, len(candles), written, f"{last_open:%Y-%m-%d %H:%M}"))
            last_values[symbol] = features.iloc[-1]
    if not symbols:
        message = "No 1-minute candles stored yet: no features computed."
        return dg.MaterializeResult(
            metadata={"rows_written": 0, "per_symbol": dg.MetadataValue.md(message)}
        )
    return dg.MaterializeResult(metadata={
        "rows_written": sum(row[2] for row in per_symbol),
        "per_symbol": dg.MetadataValue.md(markdown_table(
            ["symbol", "candles read", "feature rows written", "last open (UTC)"], per_symbol
        )),
        "last_values": dg.MetadataValue.md(markdown_table(
            ["indicator", *symbols],
            [[name, *(_format(last_values[s][name]) for s in symbols)] for name in INDICATOR_NAMES],
        )),
    })
