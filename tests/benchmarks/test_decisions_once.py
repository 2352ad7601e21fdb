"""``decisions_traded_twice``: decisions filled more than once over a run of `triplegain execute`
processes started two at a time, each killed right after a fill is stored and before its
decision is recorded, and restarted (issue 11: 0)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import redis

from tests.support.decision_executors import prepare, run

DECISIONS = 10
KILLS = 6


def test_decisions_traded_twice(tmp_path: Path, database_url: str, redis_url: str, db: psycopg.Connection,
                                redis_client: redis.Redis) -> None:
    ids = prepare(db, redis_client, decisions=DECISIONS)
    outcome = run(tmp_path, database_url, redis_url, ids, kills=KILLS, timeout_s=170.0)
    assert outcome.failures == [] and outcome.kills >= KILLS
    assert sorted(outcome.fills) == sorted(ids)
    what = (f"{len(ids)} decisions, {outcome.starts} executors started two at a time, {outcome.kills} killed"
            f" between a fill and its record, {outcome.lease_refusals} refused the lease")
    print(f"\nBENCH decisions_traded_twice {outcome.traded_twice} count ({what})")
    print(f"BENCH decisions_executor_kills {outcome.kills} count")
    print(f"BENCH decisions_lease_refusals {outcome.lease_refusals} count")
    assert outcome.traded_twice == 0
