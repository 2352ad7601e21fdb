"""The 1-minute candles the streamer and the history backfill write (table ``candles``, 1m).

An external asset: Dagster does not write the table, it observes it (see
:mod:`triplegain_dagster.defs.market_data.observations`). Its data-quality checks live in
:mod:`triplegain_dagster.defs.market_data.market_quality`.
"""

import dagster as dg

from triplegain_dagster import groups

TIMEFRAME = "1m"

candles_1m = dg.AssetSpec(
    "candles_1m",
    group_name=groups.MARKET_DATA,
    deps=["market_trades"],
    kinds={"postgres"},
    description="1-minute OHLCV candles of the streamer and the backfill (table `candles`, 1m);"
                " observed every five minutes: rows, window and missing minutes per symbol.",
    metadata={"dagster/table_name": "public.candles"},
)
