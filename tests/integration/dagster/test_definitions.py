"""The code location as Dagster loads it: valid for `dagster definitions validate`, each asset in
the group of its concern folder, every schedule and sensor aimed at a named job."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from triplegain_dagster import groups
from triplegain_dagster.definitions import defs

REPO_ROOT = Path(__file__).resolve().parents[3]

GROUP_OF = {
    "market_trades": groups.MARKET_DATA, "candles_1m": groups.MARKET_DATA,
    "ohlcv_history": groups.HISTORY,
    "indicator_features": groups.FEATURES,
    "market_regime": groups.PORTFOLIO, "portfolio_snapshots": groups.PORTFOLIO, "rebalance_plan": groups.PORTFOLIO,
    "llm_deliberation": groups.DELIBERATION, "model_performance": groups.DELIBERATION,
    "position_checkpoints": groups.DELIBERATION,
    "portfolio_report": groups.REPORTS,
    "backtest_run": groups.BACKTESTS,
}


def test_dagster_validates_the_workspace(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DAGSTER_HOME": str(tmp_path)}
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    assert "Validation successful for code location triplegain" in output


def test_each_asset_sits_in_the_group_of_its_concern_folder() -> None:
    """Python assets and the streamer's tables in their concern's group; every dbt model in
    ``marts``; the executor's tables (dbt sources) in ``trading``, the streamer's in ``market_data``."""
    graph = defs.resolve_asset_graph()
    group_of = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    models = {key for key, group in group_of.items() if group == groups.MARTS}
    tables = {key for key in group_of if key.startswith("triplegain/")}
    assert {key: group for key, group in group_of.items() if key not in models | tables} == GROUP_OF
    assert {"account_daily_pnl", "decision_funnel", "staging/stg_closed_positions"} <= models
    assert {key: group_of[key] for key in ("triplegain/orders", "triplegain/fills", "triplegain/book_snapshots")} == {
        "triplegain/orders": groups.TRADING, "triplegain/fills": groups.TRADING,
        "triplegain/book_snapshots": groups.MARKET_DATA}
    for asset in {id(a): a for a in defs.assets or []}.values():
        if isinstance(asset, dg.AssetSpec):
            continue  # an external table: no code of ours computes it
        assert isinstance(asset, dg.AssetsDefinition)
        module = asset.op.compute_fn.decorated_fn.__module__
        group = next(iter(asset.specs)).group_name
        assert group is not None and module.startswith(f"triplegain_dagster.defs.{group}."), module


def test_every_schedule_and_sensor_targets_a_named_job() -> None:
    jobs = {job.name for job in defs.jobs or []}
    assert jobs == {"refresh_analytics", "market_data_checks", "demo_analytics", "features", "deliberation",
                    "checkpoints", "rebalance"}
    targets: dict[str, str | None] = {schedule.name: schedule.job_name for schedule in defs.schedules or []}
    targets |= {sensor.name: sensor.job_name if sensor.has_jobs else None for sensor in defs.sensors or []}
    assert targets == {
        "hourly_deliberation": "deliberation", "weekly_council": "deliberation",
        "position_checkpoints_every_4h": "checkpoints", "hourly_analytics": "refresh_analytics",
        "market_checks_every_15_minutes": "market_data_checks", "features_hourly": "features",
        "strong_signal_sensor": "deliberation", "rebalance_drift_sensor": "rebalance",
        # Observing the streamer's tables and judging their freshness launch no run.
        "market_tables_observer": None, "market_freshness_checks": None,
    }


def test_every_schedule_runs_by_default_on_its_cron() -> None:
    schedules = {s.name: (s.cron_schedule, s.default_status) for s in defs.schedules or []}
    running = dg.DefaultScheduleStatus.RUNNING
    assert schedules == {
        "market_checks_every_15_minutes": ("*/15 * * * *", running),
        "hourly_analytics": ("10 * * * *", running),
        "features_hourly": ("5 * * * *", running),
        "hourly_deliberation": ("0 * * * *", running),
        "position_checkpoints_every_4h": ("0 */4 * * *", running),
        "weekly_council": ("30 0 * * 1", running),
    }
    assert {s.name: s.default_status for s in defs.sensors or []} == {
        "strong_signal_sensor": dg.DefaultSensorStatus.RUNNING,
        "rebalance_drift_sensor": dg.DefaultSensorStatus.RUNNING,
        "market_tables_observer": dg.DefaultSensorStatus.RUNNING,
        "market_freshness_checks": dg.DefaultSensorStatus.RUNNING,
    }


def test_the_weekly_council_asks_for_a_council_whatever_the_configured_mode() -> None:
    schedule = defs.resolve_schedule_def("weekly_council")
    with dg.build_schedule_context() as context:
        [request] = schedule.evaluate_tick(context).run_requests or []
    assert request.run_config["ops"] == {"llm_deliberation": {"config": {"mode": "COUNCIL"}}}


@pytest.mark.parametrize(("tick", "days"), [
    (datetime(2026, 12, 5, 10, 5, tzinfo=UTC), ["2026-12-05"]),
    # Just after midnight the last hour belongs to yesterday: its day is refreshed once more.
    (datetime(2026, 12, 5, 0, 5, tzinfo=UTC), ["2026-12-04", "2026-12-05"]),
])
def test_the_hourly_features_refresh_each_pair_on_the_days_the_last_hour_touched(
    tick: datetime, days: list[str],
) -> None:
    schedule = defs.resolve_schedule_def("features_hourly")
    with dg.instance_for_test() as instance, dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick, repository_def=defs.get_repository_def()) as context:
        requests = schedule.evaluate_tick(context).run_requests or []
    assert sorted(str(r.partition_key) for r in requests) == sorted(
        f"{day}|{symbol}" for day in days for symbol in ("BTC/USDT", "XRP/USDT", "XRP/BTC"))


def test_the_hourly_analytics_promise_their_freshness() -> None:
    graph = defs.resolve_asset_graph()
    policies = {key.to_user_string(): graph.get(key).freshness_policy for key in graph.get_all_asset_keys()}
    for name in ("indicator_features", "market_regime", "portfolio_snapshots", "portfolio_report"):
        policy = policies[name]
        assert isinstance(policy, dg.FreshnessPolicy), name
        assert policy.fail_window.to_timedelta() == timedelta(hours=2), name  # type: ignore[attr-defined]
