"""The jobs that refresh the analytics across concerns, and when they run by themselves.

Nothing waits for someone to click: the market data's checks run every quarter of an hour, the
analytics chain (regime, holdings, report, the dbt marts) every hour at ten past (after the
hourly deliberation at the hour; the features have their own hourly job, per day and symbol),
each run through the instance's queue. The streamer's tables are observed by a sensor (see
``defs/market_data/observations.py``), not refreshed by a job: Dagster does not write them.
"""

from datetime import timedelta

import dagster as dg

from triplegain_dagster import groups
from triplegain_dagster.defs.market_data.market_gate import MARKET_CHECKS, market_gate_closed

# Everything but what is partitioned by day and symbol (the REST backfill and the features, each
# with its own job), the LLM rounds, which cost money and run on their own schedule and sensor,
# and the backtests, run when someone asks for one (minutes of CPU each); with every check,
# those of the external tables included (the market's, and the dbt tests of the sources).
ANALYTICS = (dg.AssetSelection.all() - dg.AssetSelection.groups(groups.HISTORY, groups.FEATURES, groups.DELIBERATION,
                                                                groups.BACKTESTS)
             ) | dg.AssetSelection.all_asset_checks()

refresh_analytics = dg.define_asset_job(
    "refresh_analytics",
    selection=ANALYTICS,
    description="Check the trades and candles, judge the regime, value the accounts, rebuild the"
                " report.",
)

demo_analytics = dg.define_asset_job(
    "demo_analytics",
    selection=ANALYTICS | dg.AssetSelection.assets("model_performance"),
    description="What a replay leaves to look at (`make demo` runs it): the checks, regime,"
                " holdings and report, and the models' scores of the replay's own rounds; no new"
                " round, no backfill, no backtest (the demo computes the features of its days apart).",
)

ANALYTICS_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2),
                                                     warn_window=timedelta(minutes=75))
"""What the hourly analytics promise: refreshed each hour, late after 75 minutes, failed after two hours."""

market_data_checks = dg.define_asset_job(
    "market_data_checks",
    selection=MARKET_CHECKS,
    description="The trades and candles the streamer writes: their coverage and data-quality checks.",
)

market_checks_schedule = dg.ScheduleDefinition(
    name="market_checks_every_15_minutes",
    target=market_data_checks,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The market data's coverage and checks every quarter of an hour.",
)

@dg.schedule(job=refresh_analytics, cron_schedule="10 * * * *", name="hourly_analytics",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Regime, holdings, the report and the marts every hour at ten past (the"
                         " rebalance sensor's regime trigger reads the regime this writes); skipped"
                         " while the market data fails a blocking check.")
def analytics_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """The hour's refresh, unless the market data fails a blocking check."""
    return market_gate_closed(context.instance) or dg.RunRequest(
        run_key=f"analytics:{context.scheduled_execution_time:%Y%m%dT%H%M}")
