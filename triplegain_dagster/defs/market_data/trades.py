"""The public trades the streamer and the history backfill store (table ``trades``).

An external asset: Dagster does not write the table, it observes it (see
:mod:`triplegain_dagster.defs.market_data.observations`).
"""

import dagster as dg

from triplegain_dagster import groups

market_trades = dg.AssetSpec(
    "market_trades",
    group_name=groups.MARKET_DATA,
    kinds={"postgres"},
    description="Public trades written by the streamer and the REST backfill (table `trades`);"
                " observed every five minutes: trades, window and trade ids per symbol.",
    metadata={"dagster/table_name": "public.trades"},
)
