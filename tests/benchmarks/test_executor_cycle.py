"""BENCH executor_cycle_p50_ms / executor_cycle_p99_ms: the trading loop's cycle on three pairs.

The real executor (``TradingLoop``: TechnicalAgent plus every built-in strategy, each on its
own paper account) reads real Redis hot state as in production and writes to the real
PostgreSQL store. The market is the real XRP/USDT candles of ``../shared/data`` (relabelled
as consecutive 1m candles) laid on BTC/USDT, XRP/USDT and XRP/BTC at each pair's price scale.

After a warm-up (not measured) long enough for the 5m and 1h strategies to have history, two
stretches are measured. Each simulated minute publishes the three pairs' closed candles (one
candle cycle), then fresh trade prices and books before each of the following 100 ms cycles
(tick cycles):

- the live stretch (``LIVE_MINUTES``) runs the live mix: a 100 ms loop has 600 cycles a
  minute, so each minute is one candle cycle and 599 tick cycles;
- the candle stretch (the rest of the data) runs 9 tick cycles a minute, so it gathers many
  candle cycles quickly.

Figures printed (milliseconds; whole cycles include the Redis reads and PostgreSQL writes):

- ``executor_cycle_*``: every cycle of the live stretch, i.e. the live mix (1 in 600 a candle
  cycle, so its p99 is that of the tick cycles);
- ``executor_candle_cycle_*``: the candle cycles of both stretches, alone;
- ``executor_cycle_1in10_mix_*``: every cycle of the candle stretch (1 in 10 a candle cycle);
- ``executor_decision_*``: the deciding part (snapshot, TechnicalAgent, strategies; no I/O) of
  the live stretch's cycles, as the loop itself measures it; ``executor_candle_decision_*``
  that of the candle cycles;
- ``redis_ping_*``: a bare Redis round trip (PING) after each tick cycle of the live stretch:
  every cycle makes one round trip to Redis, so this is the floor the machine's load sets.

Before measuring, the benchmark settles the heap (``settle_heap``) as ``TradingLoop.run`` does
once the loop is warm.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import psycopg

from streamer.executor import TradingLoop, settle_heap
from triplegain_core.config import Settings
from triplegain_core.decision_intake import DecisionIntake
from triplegain_core.decision_stream import DecisionStream
from triplegain_core.hot_state import BookSnapshot, HotStatePublisher, HotStateReader, LastPrice
from triplegain_core.market import US_PER_MINUTE, Candle, datetime_to_us
from triplegain_core.storage.decision_events import DecisionEventStore
from triplegain_core.storage.trading_store import TradingStore

PAIRS = {"BTC/USDT": 50_000.0, "XRP/USDT": 1.0, "XRP/BTC": 2e-5}
WARM_MINUTES = 1200  # 240 5m candles and 20 1h candles of history before measuring
LIVE_MINUTES = 30
LIVE_CYCLES_PER_MINUTE = 600  # a 100 ms loop
CANDLE_STRETCH_TICK_CYCLES = 9
TICK_US = 100_000


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _minutes(shared_data: Path) -> list[list[Candle]]:
    frame = pd.read_parquet(shared_data / "binance_xrp-usdt-perp_5m.parquet")
    start = datetime_to_us(frame["ts"].iloc[0].to_pydatetime())
    return [
        [Candle(symbol, "1m", start + i * US_PER_MINUTE, row.open * k, row.high * k, row.low * k, row.close * k,
                float(row.volume), 1) for symbol, k in PAIRS.items()]
        for i, row in enumerate(frame.itertuples())
    ]


def _book(candle: Candle, ts_us: int) -> BookSnapshot:
    price, step = candle.close, candle.close * 0.0002
    return BookSnapshot(candle.symbol, ts_us, 10,
                        tuple((price - step * (i + 1), 1.0 + i) for i in range(10)),
                        tuple((price + step * (i + 1), 1.5 + i) for i in range(10)))


def test_executor_cycle(shared_data: Path, redis_client, db: psycopg.Connection) -> None:
    minutes = _minutes(shared_data)
    publisher = HotStatePublisher(redis_client)
    # As `triplegain execute` runs it: reading the decision stream too, in the same poll.
    intake = DecisionIntake(DecisionStream(redis_client), DecisionEventStore(db), start_id="0")
    loop = TradingLoop(Settings(), HotStateReader(redis_client), TradingStore(db), start_stream_id="0",
                       decisions=intake)
    for start in range(0, WARM_MINUTES, 100):
        publisher.publish([], [], [c for minute in minutes[start:start + 100] for c in minute], {"ts_us": 0})
    while loop.cycle():
        pass
    settle_heap()  # as TradingLoop.run does once the loop is warm
    loop.stats.cycle_ms.clear()
    loop.stats.decision_ms.clear()

    candle_cycles: list[float] = []
    candle_decisions: list[float] = []
    live_cycles: list[float] = []
    live_decisions: list[float] = []
    stretch_cycles: list[float] = []
    pings: list[float] = []
    for index, minute in enumerate(minutes[WARM_MINUTES:]):
        live = index < LIVE_MINUTES
        ticks = LIVE_CYCLES_PER_MINUTE - 1 if live else CANDLE_STRETCH_TICK_CYCLES
        publisher.publish([], [], minute, {"ts_us": 0})
        loop.cycle()
        candle_cycles.append(loop.stats.cycle_ms[-1])
        candle_decisions.append(loop.stats.decision_ms[-1])
        close_us = minute[0].close_time_us
        for tick in range(1, ticks + 1):
            ts_us = close_us + tick * TICK_US
            publisher.publish([LastPrice(c.symbol, c.close, ts_us) for c in minute], [], [], {"ts_us": 0},
                              books=[_book(c, ts_us) for c in minute])
            loop.cycle()
            if live:
                started = time.perf_counter()
                redis_client.ping()
                pings.append((time.perf_counter() - started) * 1000)
        measured = ticks + 1
        cycles = list(loop.stats.cycle_ms)[-measured:]
        if live:
            live_cycles += cycles
            live_decisions += list(loop.stats.decision_ms)[-measured:]
        else:
            stretch_cycles += cycles

    measured_minutes = len(minutes) - WARM_MINUTES
    assert measured_minutes > LIVE_MINUTES
    assert len(candle_cycles) == measured_minutes
    assert len(live_cycles) == LIVE_MINUTES * LIVE_CYCLES_PER_MINUTE
    assert len(stretch_cycles) == (measured_minutes - LIVE_MINUTES) * (1 + CANDLE_STRETCH_TICK_CYCLES)
    assert loop.stats.candles == 3 * len(minutes)
    # Every strategy ran on its own account; the accounts traded the measured stretch.
    assert len(loop.accounts) == 1 + len(loop.strategies) >= 12
    assert loop.stats.fills > 0
    mix = f"live mix: 1 candle cycle + {LIVE_CYCLES_PER_MINUTE - 1} tick cycles a minute, {LIVE_MINUTES} minutes"
    print(f"\nBENCH executor_cycle_p50_ms {_percentile(live_cycles, 0.5):.3f} ms ({mix})")
    print(f"BENCH executor_cycle_p99_ms {_percentile(live_cycles, 0.99):.3f} ms ({mix})")
    print(f"BENCH executor_candle_cycle_p50_ms {_percentile(candle_cycles, 0.5):.3f} ms")
    print(f"BENCH executor_candle_cycle_p99_ms {_percentile(candle_cycles, 0.99):.3f} ms")
    print(f"BENCH executor_cycle_1in10_mix_p50_ms {_percentile(stretch_cycles, 0.5):.3f} ms")
    print(f"BENCH executor_cycle_1in10_mix_p99_ms {_percentile(stretch_cycles, 0.99):.3f} ms")
    print(f"BENCH executor_decision_p50_ms {_percentile(live_decisions, 0.5):.3f} ms ({mix})")
    print(f"BENCH executor_decision_p99_ms {_percentile(live_decisions, 0.99):.3f} ms ({mix})")
    print(f"BENCH executor_candle_decision_p50_ms {_percentile(candle_decisions, 0.5):.3f} ms")
    print(f"BENCH executor_candle_decision_p99_ms {_percentile(candle_decisions, 0.99):.3f} ms")
    print(f"BENCH redis_ping_p50_ms {_percentile(pings, 0.5):.3f} ms (a bare Redis round trip after each tick cycle)")
    print(f"BENCH redis_ping_p99_ms {_percentile(pings, 0.99):.3f} ms (a bare Redis round trip after each tick cycle)")
    print(f"({len(live_cycles) + len(stretch_cycles)} cycles measured, {len(candle_cycles)} candle cycles, "
          f"{len(loop.accounts)} accounts, {loop.stats.signals} signals, {loop.stats.fills} fills)")
