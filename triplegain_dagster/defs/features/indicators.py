"""Technical-indicator features of every candle the streamer builds, stored in ``indicator_features``.

Partitioned by day and symbol: a partition computes the whole indicator set
(:data:`~triplegain_core.analysis.indicators.FEATURE_NAMES`) of the day's candles of every
timeframe, over ``WARMUP_BARS`` candles of that timeframe before the day, so a day is computed
without the history before it (a backfill runs days side by side, a refresh costs a day) and
gives the values a computation over the whole history would (OBV, the one cumulative feature,
counted from the day's start). ``features_hourly`` refreshes the
days the last hour touched; the market data's checks run first in each run, and a failed
blocking check stops the features of bad data.
"""

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd

from triplegain_core.analysis.indicators import FEATURE_NAMES, feature_frame
from triplegain_core.model.market import TIMEFRAME_US, TIMEFRAMES, TRADED_SYMBOLS
from triplegain_core.reporting.reports import markdown_table
from triplegain_core.storage.market_store import MarketStore
from triplegain_dagster import groups
from triplegain_dagster.defs.analytics import ANALYTICS_FRESHNESS
from triplegain_dagster.defs.history.ohlcv import HISTORY_START_DATE
from triplegain_dagster.defs.market_data.candles import candles_1m
from triplegain_dagster.defs.market_data.market_gate import MARKET_CHECKS, market_gate_closed
from triplegain_dagster.resources import PostgresResource

OHLCV = ["open", "high", "low", "close", "volume"]
# Candles of a timeframe read before the day: every indicator's memory of older candles
# (exponential and Wilder smoothing, at most 50 periods; rolling windows of at most 100) has
# decayed below float precision by then.
WARMUP_BARS = 1000

# The current day too (end_offset=1): the hourly refresh computes the day still running.
feature_partitions = dg.MultiPartitionsDefinition({
    "date": dg.DailyPartitionsDefinition(start_date=HISTORY_START_DATE, end_offset=1),
    "symbol": dg.StaticPartitionsDefinition(list(TRADED_SYMBOLS)),
})


def _feature_rows(
    symbol: str, timeframe: str, open_times: pd.Series, features: pd.DataFrame
) -> Iterator[tuple[str, str, datetime, str]]:
    """(symbol, timeframe, open_time, features JSON) per candle with at least one finite value.

    Warm-up rows (all NaN) are left out: JSON has no NaN, and an empty feature set says nothing.
    """
    names = list(features.columns)
    for open_time, values in zip(open_times, features.to_numpy(dtype=float), strict=True):
        finite = {name: float(v) for name, v in zip(names, values, strict=True) if math.isfinite(v)}
        if finite:
            yield symbol, timeframe, open_time.to_pydatetime(), json.dumps(finite)


def _format(value: float) -> str:
    return "NaN" if np.isnan(value) else f"{value:.6g}"


@dg.asset(
    group_name=groups.FEATURES,
    partitions_def=feature_partitions,
    freshness_policy=ANALYTICS_FRESHNESS,
    deps=[candles_1m],
    kinds={"postgres"},
    description="The whole TA-Lib indicator set of every candle (1m to 1d) of one day and symbol"
                " (table `indicator_features`, jsonb), over 1,000 candles of warm-up before the day.",
)
def indicator_features(
    context: dg.AssetExecutionContext, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Compute and upsert the features of the partition's day and symbol, every timeframe."""
    keys = context.partition_key.keys_by_dimension
    symbol = keys["symbol"]
    day = datetime.fromisoformat(keys["date"]).replace(tzinfo=UTC)
    per_timeframe: list[tuple[str, int, int, str]] = []
    last_values: dict[str, pd.Series] = {}
    with postgres.connect() as conn:
        store = MarketStore(conn)
        for timeframe in TIMEFRAMES:
            span = timedelta(microseconds=TIMEFRAME_US[timeframe])
            candles = store.read_candles(symbol, timeframe, start=day - WARMUP_BARS * span, end=day + timedelta(days=1))
            if candles.empty:
                continue
            features = feature_frame(candles)
            today = candles["open_time"] >= day
            if not today.all():
                # OBV is cumulative: counted from the day's start, a day's values do not depend
                # on how much history was read (its changes are the whole history's).
                features["obv"] -= features["obv"][~today].iloc[-1]
            written = store.write_features(_feature_rows(symbol, timeframe, candles["open_time"][today],
                                                         features[today]))
            if not today.any():
                continue
            last_open = candles["open_time"].iloc[-1]
            per_timeframe.append((timeframe, int(today.sum()), written, f"{last_open:%Y-%m-%d %H:%M}"))
            last_values[timeframe] = features.iloc[-1]
    context.log.info("%s %s: %s", symbol, keys["date"],
                     ", ".join(f"{tf} {rows} rows" for tf, _, rows, _ in per_timeframe) or "no candles")
    if not per_timeframe:
        return dg.MaterializeResult(metadata={
            "rows_written": 0,
            "per_timeframe": dg.MetadataValue.md(f"No {symbol} candle on {keys['date']}: no features computed."),
        })
    timeframes = [row[0] for row in per_timeframe]
    return dg.MaterializeResult(metadata={
        "rows_written": sum(row[2] for row in per_timeframe),
        "per_timeframe": dg.MetadataValue.md(markdown_table(
            ["timeframe", "candles of the day", "feature rows written", "last open (UTC)"], per_timeframe)),
        "last_values": dg.MetadataValue.md(markdown_table(
            ["indicator", *timeframes],
            [[name, *(_format(last_values[tf][name]) for tf in timeframes)] for name in FEATURE_NAMES])),
    })


def days_touched(since: datetime, until: datetime) -> list[str]:
    """The partition dates (UTC days) that ``[since, until]`` overlaps, oldest first."""
    first, last = since.astimezone(UTC).date(), until.astimezone(UTC).date()
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


features_job = dg.define_asset_job(
    "features",
    selection=dg.AssetSelection.assets(indicator_features) | MARKET_CHECKS,
    description="The market data's checks and one day and symbol of indicator features (its"
                " schedule holds them while a blocking check of the market data fails).",
)


@dg.schedule(job=features_job, cron_schedule="5 * * * *", default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Every hour at five past: the features of the days the last hour touched, per symbol.")
def features_hourly(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
    """One run per symbol and day touched by the hour before the tick, unless the market data
    fails a blocking check."""
    if closed := market_gate_closed(context.instance):
        return closed
    tick = context.scheduled_execution_time
    return [dg.RunRequest(run_key=f"features:{date}:{symbol}:{tick:%Y%m%dT%H}",
                          partition_key=dg.MultiPartitionKey({"date": date, "symbol": symbol}))
            for date in days_touched(tick - timedelta(hours=1, minutes=5), tick) for symbol in TRADED_SYMBOLS]
