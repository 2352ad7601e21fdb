"""BENCH executor_paced_cycle_p50_ms / _p99_ms: the trading loop run as `triplegain execute` runs it.

``executor_cycle_*`` (test_executor_cycle) times cycles run back to back: the cost of the work.
Here the real ``TradingLoop.run`` keeps its 100 ms grid for ``PACED_SECONDS`` of wall time
while a streamer process publishes one batch (a trade, a price and a book per pair) every
100 ms, and a minute's closed candles every 600 batches, on the three-pair market. Between two
cycles the loop sleeps, as in production: on a virtual machine a thread woken from a 100 ms
sleep runs the same work slower than one running back to back (cold caches, an idle CPU), so
these figures show what the live loop gets on this machine.

Figures: ``executor_paced_cycle_*`` (each cycle, as the loop times it), ``executor_paced_cycles``
and ``executor_paced_expected_cycles`` (the cycles run against the cycles the grid has room
for: fewer would mean the loop drifted).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterator
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import psycopg
import pytest
import redis

from tests.support.decisions import executor_intake
from tests.support.three_pair_market import (
    BATCHES_PER_MINUTE,
    WARM_MINUTES,
    percentile,
    publish_batch,
    three_pair_minutes,
    warm_loop,
)
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import HotStatePublisher
from triplegain_core.decisions.intake import DecisionIntake

PACED_SECONDS = 120.0
BATCH_INTERVAL_S = 0.1


@pytest.fixture
def decisions(redis_client: redis.Redis, database_url: str) -> Iterator[DecisionIntake]:
    """The executor's decision intake, its consumer-group feed running meanwhile."""
    with executor_intake(redis_client, database_url) as intake:
        yield intake


def _stream(redis_url: str, minutes, stop: EventType) -> None:
    """Publish the minutes as the streamer would, one batch every ``BATCH_INTERVAL_S``."""
    publisher = HotStatePublisher(redis.Redis.from_url(redis_url))
    next_batch = time.monotonic()
    for minute in minutes:
        for batch in range(BATCHES_PER_MINUTE):
            if stop.is_set():
                return
            if batch == 0:
                publisher.publish([], [], minute, {"ts_us": 0})
            else:
                publish_batch(publisher, minute, batch)
            next_batch += BATCH_INTERVAL_S
            stop.wait(max(0.0, next_batch - time.monotonic()))


def test_executor_paced(shared_data: Path, redis_url: str, redis_client, db: psycopg.Connection,
                        decisions: DecisionIntake) -> None:
    minutes = three_pair_minutes(shared_data)
    loop = warm_loop(minutes, redis_client, db, decisions)
    interval = Settings().loop_interval_s
    # The streamer is a process of its own, as in production: its work does not share the loop's interpreter.
    context = multiprocessing.get_context("spawn")
    stop_streamer = context.Event()
    streamer = context.Process(target=_stream, args=(redis_url, minutes[WARM_MINUTES:], stop_streamer), daemon=True)

    async def run_for(seconds: float) -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(loop.run(stop, drain_before_stop=False))
        await asyncio.sleep(seconds)
        stop.set()
        await running

    streamer.start()
    try:
        asyncio.run(run_for(PACED_SECONDS))
    finally:
        stop_streamer.set()
        streamer.join()

    cycles = list(loop.stats.cycle_ms)
    assert cycles and loop.stats.candles > 0 and loop.stats.signals > 0
    what = f"TradingLoop.run on its 100 ms grid, {PACED_SECONDS:.0f} s, a streamer batch every 100 ms"
    print(f"\nBENCH executor_paced_cycle_p50_ms {percentile(cycles, 0.5):.3f} ms ({what})")
    print(f"BENCH executor_paced_cycle_p99_ms {percentile(cycles, 0.99):.3f} ms ({what})")
    print(f"BENCH executor_paced_cycles {len(cycles)} cycles")
    print(f"BENCH executor_paced_expected_cycles {int(PACED_SECONDS / interval)} cycles")
