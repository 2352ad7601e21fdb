"""The Dagster instance: on PostgreSQL, in a database of its own, surviving a restart."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg
import pytest
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from psycopg.conninfo import conninfo_to_dict

from streamer.cli.main import main
from triplegain_core.storage.dagster_instance import DAGSTER_DATABASE_URL_ENV, prepare_dagster_home

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def instance_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = prepare_dagster_home(tmp_path / "dagster", REPO_ROOT / "dagster.yaml", database_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@dg.asset
def counted() -> int:
    return 1


def test_the_instance_keeps_runs_in_its_own_postgresql_database_across_a_restart(
    instance_env: dict[str, str], database_url: str,
) -> None:
    url = instance_env[DAGSTER_DATABASE_URL_ENV]
    assert url.startswith("postgresql+psycopg2://")
    assert urlsplit(url).path == f"/{conninfo_to_dict(database_url)['dbname']}_dagster"
    with dg.DagsterInstance.from_config(instance_env["DAGSTER_HOME"]) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        assert coordinator.get_run_queue_config().max_concurrent_runs == 2  # type: ignore[attr-defined]
        run_id = dg.materialize([counted], instance=instance).run_id
    # A restarted UI reads the same instance: the run and its materialization are there.
    with dg.DagsterInstance.from_config(instance_env["DAGSTER_HOME"]) as restarted:
        assert restarted.get_run_by_id(run_id) is not None
        assert restarted.get_latest_materialization_event(dg.AssetKey("counted")) is not None
    # Dagster's tables are in its own database, not among the trading tables.
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('runs')").fetchone() == (None,)


def test_a_user_edited_instance_file_is_kept(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    prepare_dagster_home(home, REPO_ROOT / "dagster.yaml", database_url)
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_triplegain_dagster_runs_dagster_on_the_project_instance(
    database_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TRIPLEGAIN_DATABASE_URL", database_url)
    monkeypatch.setenv("TRIPLEGAIN_REDIS_URL", redis_url)
    monkeypatch.setenv("TRIPLEGAIN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["dagster", "instance", "info"]) == 0
    out = capfd.readouterr().out
    assert f"$DAGSTER_HOME: {tmp_path / 'dagster'}" in out
    assert "run_storage: PostgresRunStorage" in out and "schedule_storage: PostgresScheduleStorage" in out
