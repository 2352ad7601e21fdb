"""PostgreSQL out of reach under a running `triplegain execute`: the process does not exit, places
no order while it cannot record, and when the server is back continues from the last recorded
cycle, ending with exactly the trail of an uninterrupted run of the same input.

The outage is the test's own database made unreachable: connections to it refused and every
session on it terminated (``ALTER DATABASE ... ALLOW_CONNECTIONS false`` and
``pg_terminate_backend``), for a few seconds; the server itself and its other databases carry on.
The input is the restart test's (closed candles only, published before the executor runs; see
tests/integration/executor/test_restart_kills.py for why nothing else).
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict

from tests.support.restart_replay import (
    mismatches,
    processed_id,
    publish_closed,
    real_candles,
    run_uninterrupted,
    start_executor,
    stop,
    wait_until_processed,
    write_config,
)

OUTAGE_S = 5.0


def test_an_executor_outlives_a_database_outage_and_ends_as_an_uninterrupted_one(
    shared_data: Path, database_url: str, second_database_url: str, pg_admin_url: str, redis_url: str,
    redis_client: redis.Redis, db: psycopg.Connection, tmp_path: Path,
) -> None:
    ids = publish_closed(redis_client, real_candles(shared_data, repeat=2))
    # The failed writes count for the failure breaker, which would turn the accounts reduce-only
    # after the outage (test_guards shows it): set beyond reach, to compare with the uninterrupted run.
    config = write_config(tmp_path, failure_limit=1000)
    run_uninterrupted(db, database_url, redis_url, config, tmp_path / "whole.log", ids)

    url = second_database_url
    log = tmp_path / "outage.log"
    process = start_executor(url, redis_url, config, log)
    try:
        position = {entry: index for index, entry in enumerate(ids)}
        with psycopg.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + 120
            while (done := processed_id(conn)) is None or position[done] < len(ids) // 4:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.005)
        name = conninfo_to_dict(url)["dbname"]
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            time.sleep(OUTAGE_S)
            assert process.poll() is None, "the executor exited when PostgreSQL went away"
            assert "PostgreSQL is out of reach" in log.read_text()
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        with psycopg.connect(url, autocommit=True) as conn:
            wait_until_processed(conn, ids[-1], process)
            stop(process, log)
            assert "PostgreSQL answers again" in log.read_text()
            assert "Traceback" not in log.read_text()
            assert "failure counted by the breaker (write): PostgreSQL out of reach" in log.read_text()
            # The same trail; the checkpoint's guard state differs only by the failures it counted.
            assert mismatches(db, conn, state_without=("guards",)) == {}
            failures = conn.execute("SELECT kernel_state->'guards'->'failure_times_us' FROM executor_loop_checkpoints"
                                    ).fetchone()[0]
            assert len(failures) >= 1
            assert conn.execute("SELECT count(*) FROM positions").fetchone()[0] > 10
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
