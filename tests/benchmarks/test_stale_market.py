"""BENCH stale_market_orders: orders placed while the market was older than the guard's limit.

The real trading loop on real Redis and PostgreSQL, on a clock the run advances a second per
cycle (:mod:`tests.support.stale_market`): a live XRP/USDT market that goes stale ten times,
the streamer stopped (no heartbeat) or the exchange silent (heartbeat, no trade) for 11 s to
3 minutes, while a model publishes a LONG or a CLOSE every 3 s whatever the market does. After
each cycle the run judges the market's age from what it published and counts the orders the
cycle placed while that age was beyond the guard's 10 s. Also printed: the stale periods and
cycles, and every order the run placed (the decisions held while stale trade once fresh data
returns).
"""

from __future__ import annotations

import psycopg
import redis

from tests.support.stale_market import START_US, Phase, StepClock, run_stale_market, stale_market_loop

STALE_SECONDS = (11, 25, 60, 15, 180, 12, 40, 90, 20, 30)


def test_stale_market_orders(db: psycopg.Connection, redis_client: redis.Redis) -> None:
    clock = StepClock(START_US)
    loop = stale_market_loop(db, redis_client, clock)
    phases = [Phase(45)]
    for index, seconds in enumerate(STALE_SECONDS):
        # Even periods: the streamer stopped; odd ones: the streamer alive, the exchange silent.
        phases += [Phase(seconds, fresh=False, heartbeat=index % 2 == 1), Phase(45)]
    run = run_stale_market(loop, db, redis_client, clock, phases)
    print(f"BENCH stale_market_orders {run.stale_market_orders} count")
    print(f"BENCH stale_market_periods {run.stale_periods} count")
    print(f"BENCH stale_market_cycles {run.stale_cycles} count")
    print(f"BENCH stale_market_run_orders {run.orders} count")
    assert run.stale_periods == len(STALE_SECONDS)
    assert run.stale_market_orders == 0
    assert run.orders == run.decisions
