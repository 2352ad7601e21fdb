"""BENCH executor_cycle_p50_ms / executor_cycle_p99_ms: the trading loop's cycle on three pairs.

The real executor (``TradingLoop``: TechnicalAgent plus every built-in strategy, each on its
own paper account) reads real Redis hot state as in production and writes to the real
PostgreSQL store. The market is the real XRP/USDT candles of ``../shared/data`` (relabelled
as consecutive 1m candles) laid on BTC/USDT, XRP/USDT and XRP/BTC at each pair's price scale.

After a warm-up (not measured) long enough for the 5m and 1h strategies to have history, the
loop reads the hot state as ``TradingLoop.run`` does, through its feed thread
(``TradingLoop.feeding``), and three stretches are measured. Each simulated minute publishes the
three pairs' closed candles (one candle cycle), then, before each of the following 100 ms
cycles (tick cycles), one trade per pair with its price and a fresh book, as the streamer
publishes a batch. Each cycle starts once the feed has read the publication before it:

- the live stretch (``LIVE_MINUTES``) runs the live mix: a 100 ms loop has 600 cycles a
  minute, so each minute is one candle cycle and 599 tick cycles;
- the synchronous stretch (``SYNC_MINUTES``) runs the same mix with the feed stopped: each
  cycle reads Redis itself, one round trip inside the cycle, for comparison;
- the candle stretch (the rest of the data, fed again) runs 9 tick cycles a minute, so it
  gathers many candle cycles quickly.

Figures printed (milliseconds; whole cycles include taking the feed's reads, the PostgreSQL
writes and, in the synchronous stretch, the Redis round trip):

- ``executor_cycle_*``: every cycle of the live stretch, i.e. the live mix (1 in 600 a candle
  cycle, so its p99 is that of the tick cycles);
- ``executor_feed_lag_*``: from a publication's return to the feed having read it, over the
  live stretch: how much later than a synchronous read the loop can see it;
- ``executor_cycle_sync_*``: every cycle of the synchronous stretch;
- ``executor_candle_cycle_*``: the candle cycles of both stretches, alone;
- ``executor_cycle_1in10_mix_*``: every cycle of the candle stretch (1 in 10 a candle cycle);
- ``executor_decision_*``: the deciding part (snapshot, TechnicalAgent, strategies; no I/O) of
  the live stretch's cycles, as the loop itself measures it; ``executor_candle_decision_*``
  that of the candle cycles;
- ``redis_ping_*``: a bare Redis round trip (PING) after each tick cycle of the synchronous
  stretch: the floor of a cycle that reads Redis itself, as the machine's load sets it.

Before measuring, the benchmark settles the heap (``settle_heap``) as ``TradingLoop.run`` does
once the loop is warm.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from streamer.executor.feed import HotStateFeed
from streamer.executor.loop import TradingLoop, settle_heap
from tests.support.decisions import executor_intake
from tests.support.three_pair_market import (
    BATCHES_PER_MINUTE,
    WARM_MINUTES,
    percentile,
    publish_batch,
    three_pair_minutes,
    warm_loop,
)
from triplegain_core.contracts.hot_state import HotStatePublisher
from triplegain_core.decisions.intake import DecisionIntake
from triplegain_core.storage.control_store import ControlWatch

LIVE_MINUTES = 30
SYNC_MINUTES = 10
LIVE_CYCLES_PER_MINUTE = BATCHES_PER_MINUTE  # a 100 ms loop
CANDLE_STRETCH_TICK_CYCLES = 9
FEED_TIMEOUT_S = 5.0


@pytest.fixture
def decisions(redis_client: redis.Redis, database_url: str) -> Iterator[DecisionIntake]:
    """The executor's decision intake, its consumer-group feed running meanwhile."""
    with executor_intake(redis_client, database_url) as intake:
        yield intake


def _fed_cycle(loop: TradingLoop, feed: HotStateFeed) -> float:
    """One cycle once the feed has read what was just published; returns the feed's lag (ms)."""
    published = time.perf_counter()
    assert feed.wait_fresh(FEED_TIMEOUT_S), "the feed did not read the publication"
    lag = (time.perf_counter() - published) * 1000
    loop.cycle()
    return lag


@pytest.fixture
def control_watch(database_url: str) -> Iterator[ControlWatch]:
    """The executor's watch for control commands, on its thread as in `triplegain execute`."""
    with ControlWatch(database_url) as watch:
        yield watch


def test_executor_cycle(shared_data: Path, redis_client, db: psycopg.Connection, decisions: DecisionIntake,
                        control_watch: ControlWatch) -> None:
    minutes = three_pair_minutes(shared_data)
    publisher = HotStatePublisher(redis_client)
    loop = warm_loop(minutes, redis_client, db, decisions, control_watch)
    settle_heap()  # as TradingLoop.run does once the loop is warm

    live = minutes[WARM_MINUTES:WARM_MINUTES + LIVE_MINUTES]
    synchronous = minutes[WARM_MINUTES + LIVE_MINUTES:WARM_MINUTES + LIVE_MINUTES + SYNC_MINUTES]
    stretch = minutes[WARM_MINUTES + LIVE_MINUTES + SYNC_MINUTES:]
    assert stretch
    candle_cycles: list[float] = []
    candle_decisions: list[float] = []
    live_cycles: list[float] = []
    live_decisions: list[float] = []
    lags: list[float] = []
    sync_cycles: list[float] = []
    pings: list[float] = []
    stretch_cycles: list[float] = []

    def measured(count: int) -> tuple[list[float], list[float]]:
        """The last ``count`` cycles and decisions; the first of them the minute's candle cycle."""
        cycles, decisions = list(loop.stats.cycle_ms)[-count:], list(loop.stats.decision_ms)[-count:]
        candle_cycles.append(cycles[0])
        candle_decisions.append(decisions[0])
        return cycles, decisions

    with loop.feeding() as feed:
        for minute in live:
            publisher.publish([], [], minute, {"ts_us": 0})
            lags.append(_fed_cycle(loop, feed))
            for tick in range(1, LIVE_CYCLES_PER_MINUTE):
                publish_batch(publisher, minute, tick)
                lags.append(_fed_cycle(loop, feed))
            cycles, decisions = measured(LIVE_CYCLES_PER_MINUTE)
            live_cycles += cycles
            live_decisions += decisions
    for minute in synchronous:
        publisher.publish([], [], minute, {"ts_us": 0})
        loop.cycle()
        for tick in range(1, LIVE_CYCLES_PER_MINUTE):
            publish_batch(publisher, minute, tick)
            loop.cycle()
            started = time.perf_counter()
            redis_client.ping()
            pings.append((time.perf_counter() - started) * 1000)
        sync_cycles += measured(LIVE_CYCLES_PER_MINUTE)[0]
    with loop.feeding() as feed:
        for minute in stretch:
            publisher.publish([], [], minute, {"ts_us": 0})
            _fed_cycle(loop, feed)
            for tick in range(1, CANDLE_STRETCH_TICK_CYCLES + 1):
                publish_batch(publisher, minute, tick)
                _fed_cycle(loop, feed)
            stretch_cycles += measured(1 + CANDLE_STRETCH_TICK_CYCLES)[0]

    assert len(candle_cycles) == len(minutes) - WARM_MINUTES
    assert len(live_cycles) == len(lags) == LIVE_MINUTES * LIVE_CYCLES_PER_MINUTE
    assert len(sync_cycles) == SYNC_MINUTES * LIVE_CYCLES_PER_MINUTE
    assert len(stretch_cycles) == len(stretch) * (1 + CANDLE_STRETCH_TICK_CYCLES)
    assert loop.stats.candles == 3 * len(minutes)
    # Every strategy ran on its own account; the accounts traded the measured stretch.
    assert len(loop.kernel.accounts) == 1 + len(loop.kernel.strategies) >= 12
    assert loop.stats.fills > 0
    mix = f"live mix: 1 candle cycle + {LIVE_CYCLES_PER_MINUTE - 1} tick cycles a minute"
    figures = [
        ("executor_cycle", live_cycles, f"{mix}, {LIVE_MINUTES} minutes, fed"),
        ("executor_feed_lag", lags, "publication to the feed, live stretch"),
        ("executor_cycle_sync", sync_cycles, f"{mix}, {SYNC_MINUTES} minutes, a Redis read in each cycle"),
        ("executor_candle_cycle", candle_cycles, "every candle cycle"),
        ("executor_cycle_1in10_mix", stretch_cycles, "1 candle cycle in 10, fed"),
        ("executor_decision", live_decisions, f"{mix}, {LIVE_MINUTES} minutes"),
        ("executor_candle_decision", candle_decisions, "every candle cycle"),
        ("redis_ping", pings, "a bare Redis round trip after each tick cycle of the synchronous stretch"),
    ]
    print()
    for name, samples, what in figures:
        print(f"BENCH {name}_p50_ms {percentile(samples, 0.5):.3f} ms ({what})")
        print(f"BENCH {name}_p99_ms {percentile(samples, 0.99):.3f} ms ({what})")
    print(f"({len(live_cycles) + len(sync_cycles) + len(stretch_cycles)} cycles measured, "
          f"{len(candle_cycles)} candle cycles, {len(loop.kernel.accounts)} accounts, {loop.stats.signals} signals, "
          f"{loop.stats.fills} fills)")
