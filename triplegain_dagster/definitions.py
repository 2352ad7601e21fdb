"""Every Dagster definition of TripleGain, assembled in one place: the code location's entry."""

from __future__ import annotations

import dagster as dg

from triplegain_dagster.assets.candles import candles_1m, candles_1m_consistent
from triplegain_dagster.assets.features import indicator_features
from triplegain_dagster.assets.report import portfolio_report
from triplegain_dagster.resources import PostgresResource, RedisResource

refresh_analytics = dg.define_asset_job(
    "refresh_analytics",
    selection=dg.AssetSelection.all(),
    description="Check the candles, recompute the indicator features, rebuild the report.",
)

defs = dg.Definitions(
    assets=[candles_1m, indicator_features, portfolio_report],
    asset_checks=[candles_1m_consistent],
    jobs=[refresh_analytics],
    # Unconfigured: both resolve from TRIPLEGAIN_* / the config file / the embedded servers at
    # run time, so no URL (and no password in one) is ever part of the config the UI shows.
    resources={"postgres": PostgresResource(), "redis": RedisResource()},
)
