"""The job that refreshes every analytics asset, across concerns."""

import dagster as dg

from triplegain_dagster import groups

# Everything but the partitioned REST backfill, which runs per day and symbol (a backfill), the
# LLM rounds, which cost money and run on their own schedule and sensor, and the backtests, run
# when someone asks for one (minutes of CPU each).
ANALYTICS = dg.AssetSelection.all() - dg.AssetSelection.groups(groups.HISTORY, groups.DELIBERATION,
                                                               groups.BACKTESTS)

refresh_analytics = dg.define_asset_job(
    "refresh_analytics",
    selection=ANALYTICS,
    description="Check the trades and candles, recompute the indicator features, rebuild the"
                " report.",
)
