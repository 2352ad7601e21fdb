"""Every Dagster definition of TripleGain, assembled in one place: the code location's entry."""

from __future__ import annotations

import dagster as dg

from triplegain_dagster.assets.candles import candles_1m
from triplegain_dagster.assets.checkpoints import position_checkpoints
from triplegain_dagster.assets.deliberation import DELIBERATION_GROUP, llm_deliberation
from triplegain_dagster.assets.features import indicator_features
from triplegain_dagster.assets.history import HISTORY_GROUP, ohlcv_history
from triplegain_dagster.assets.model_performance import model_performance
from triplegain_dagster.assets.portfolio import portfolio_snapshots
from triplegain_dagster.assets.rebalance import rebalance_plan
from triplegain_dagster.assets.regime import market_regime
from triplegain_dagster.assets.report import portfolio_report
from triplegain_dagster.assets.trades import market_trades
from triplegain_dagster.checks.market_quality import MARKET_QUALITY_CHECKS
from triplegain_dagster.deliberation_triggers import (
    checkpoint_job,
    checkpoint_schedule,
    deliberation_job,
    deliberation_schedule,
    strong_signal_sensor,
)
from triplegain_dagster.resources import (
    DataQualityResource,
    ExchangeResource,
    LLMResource,
    PostgresResource,
    RebalancingResource,
    RedisResource,
)
from triplegain_dagster.sensors import rebalance_drift_sensor

# Everything but the partitioned REST backfill, which runs per day and symbol (a backfill), and
# the LLM rounds, which cost money and run on their own schedule and sensor.
ANALYTICS = dg.AssetSelection.all() - dg.AssetSelection.groups(HISTORY_GROUP, DELIBERATION_GROUP)

refresh_analytics = dg.define_asset_job(
    "refresh_analytics",
    selection=ANALYTICS,
    description="Check the trades and candles, recompute the indicator features, rebuild the"
                " report.",
)

defs = dg.Definitions(
    assets=[market_trades, candles_1m, indicator_features, portfolio_report, ohlcv_history,
            market_regime, portfolio_snapshots, rebalance_plan, llm_deliberation, model_performance,
            position_checkpoints],
    asset_checks=MARKET_QUALITY_CHECKS,
    jobs=[refresh_analytics, deliberation_job, checkpoint_job],
    schedules=[deliberation_schedule, checkpoint_schedule],
    sensors=[rebalance_drift_sensor, strong_signal_sensor],
    # Unconfigured: the database and Redis resolve from TRIPLEGAIN_* / the config file / the
    # embedded servers at run time, so no URL (and no password in one) is ever part of the
    # config the UI shows; the exchange is Kraken's own REST API, keys from the environment.
    resources={
        "postgres": PostgresResource(),
        "redis": RedisResource(),
        "exchange": ExchangeResource(),
        "quality": DataQualityResource(),
        "rebalancing": RebalancingResource(),
        "llm": LLMResource(),
    },
)
