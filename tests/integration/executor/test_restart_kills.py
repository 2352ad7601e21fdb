"""`triplegain execute` killed with SIGKILL at random moments of a real-data replay and restarted
each time under the same account names ends with exactly the orders, fills, positions and equity
of an uninterrupted run of the same input, every order placed once.

The input is fixed before the executor runs: the real XRP/USDT candles of ``../shared/data``
(played four times end to end, for a run long enough to kill several times) are all published
as closed candles first, and nothing else is (no price ticks, books or trades). A tick between
two candles would make the result depend on timing: which cycle sees which price depends on
when the loop reads, in a killed run as in an uninterrupted one. Candles alone are processed
moment by moment in stream order whatever the cycles they arrive in, so both runs must agree
exactly. The default strategies and the TechnicalAgent trade this market: dozens of positions
open and close, some open when a kill comes.
"""

from __future__ import annotations

import random
from pathlib import Path

import psycopg
import redis

from tests.support.restart_replay import (
    mismatches,
    publish_closed,
    real_candles,
    run_uninterrupted,
    run_with_kills,
    write_config,
)

KILLS = 6
SEED = 20261205


def test_an_executor_killed_at_random_moments_ends_as_an_uninterrupted_one(
    shared_data: Path, database_url: str, second_database_url: str, redis_url: str, redis_client: redis.Redis,
    db: psycopg.Connection, tmp_path: Path,
) -> None:
    ids = publish_closed(redis_client, real_candles(shared_data, repeat=4))
    config = write_config(tmp_path)
    run_uninterrupted(db, database_url, redis_url, config, tmp_path / "whole.log", ids)
    with psycopg.connect(second_database_url, autocommit=True) as killed:
        run = run_with_kills(killed, second_database_url, redis_url, config, tmp_path, ids, KILLS,
                             random.Random(SEED))

        assert len(run.kills) == KILLS
        assert all("Traceback" not in log for log in run.logs)
        assert all("restored" in log for log in run.logs[1:])
        # The kills came at different points of the run, some with positions open.
        assert len({kill.processed for kill in run.kills}) >= 3
        assert any(kill.open_positions for kill in run.kills)
        # Enough trading that the comparison means something.
        closed, opened = killed.execute("SELECT count(*) FILTER (WHERE status = 'closed'), count(*)"
                                        " FROM positions").fetchone()
        assert closed >= 50 and opened - closed >= 0
        # Every order placed once: one submission each, at most one fill each.
        twice = killed.execute("SELECT count(*) FROM (SELECT order_id FROM order_events WHERE detail = 'submitted'"
                               " GROUP BY order_id HAVING count(*) > 1) AS t").fetchone()[0]
        assert twice == 0
        refilled = killed.execute("SELECT count(*) FROM (SELECT order_id FROM fills GROUP BY order_id"
                                  " HAVING count(*) > 1) AS t").fetchone()[0]
        assert refilled == 0

        assert mismatches(db, killed) == {}
