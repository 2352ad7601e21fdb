"""BENCH executor_restart_kills / executor_restart_mismatches / executor_restart_to_first_cycle_ms.

`triplegain execute` over a real-data replay (the XRP/USDT candles of ``../shared/data``, played
four times, all published before it runs; see tests/integration/executor/test_restart_kills.py
for why candles alone), once without interruption and once killed with SIGKILL at seeded random
moments and restarted under the same account names each time. Figures:

- ``executor_restart_kills``: how many times the executor was killed and restarted;
- ``executor_restart_mismatches``: rows of the trail (signals, intents, risk checks, orders and
  their events, fills, positions and their events, snapshots, checkpoints) that differ between
  the two runs, plus orders submitted twice;
- ``executor_restart_to_first_cycle_ms``: from starting the process of a restored executor (the
  whole run in its checkpoint) to its first cycle with the restored state, as it logs it: the
  median of three restarts (imports, migrations check, restore, warm-up of the history).
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import psycopg
import redis

from tests.support.restart_replay import (
    mismatches,
    publish_closed,
    real_candles,
    run_uninterrupted,
    run_with_kills,
    time_to_first_cycle,
    write_config,
)

KILLS = 6
SEED = 7
RESTARTS = 3


def test_executor_restart(shared_data: Path, database_url: str, second_database_url: str, redis_url: str,
                          redis_client: redis.Redis, db: psycopg.Connection, tmp_path: Path) -> None:
    ids = publish_closed(redis_client, real_candles(shared_data, repeat=4))
    config = write_config(tmp_path)
    run_uninterrupted(db, database_url, redis_url, config, tmp_path / "whole.log", ids)

    killed_url = second_database_url
    with psycopg.connect(killed_url, autocommit=True) as killed:
        run = run_with_kills(killed, killed_url, redis_url, config, tmp_path, ids, KILLS, random.Random(SEED))
        differing = sum(mismatches(db, killed).values())
        twice = killed.execute("SELECT count(*) FROM (SELECT order_id FROM order_events WHERE detail = 'submitted'"
                               " GROUP BY order_id HAVING count(*) > 1) AS t").fetchone()[0]
        closed = killed.execute("SELECT count(*) FROM positions WHERE status = 'closed'").fetchone()[0]
    first_cycle = [time_to_first_cycle(killed_url, redis_url, config, tmp_path / f"restart-{i}.log")
                   for i in range(RESTARTS)]

    print(f"\nBENCH executor_restart_kills {len(run.kills)} count (SIGKILL at random moments of a replay of"
          f" {len(ids)} candles, {closed} positions closed, {sum(k.open_positions > 0 for k in run.kills)} kills"
          " with positions open)")
    print(f"BENCH executor_restart_mismatches {differing + twice} count (trail rows differing from an"
          " uninterrupted run, plus orders submitted twice)")
    print(f"BENCH executor_restart_to_first_cycle_ms {statistics.median(first_cycle):.0f} ms (process start to"
          f" the first cycle with the restored state, median of {RESTARTS})")
    assert len(run.kills) >= 5
    assert differing + twice == 0
