"""BENCH executor_cycle_p50_ms / executor_cycle_p99_ms: the trading loop's cycle on three pairs.

The real executor (``TradingLoop``: TechnicalAgent plus every built-in strategy, each on its
own paper account) reads real Redis hot state as in production and writes to the real
PostgreSQL store. The market is the real XRP/USDT candles of ``../shared/data`` (relabelled
as consecutive 1m candles) laid on BTC/USDT, XRP/USDT and XRP/BTC at each pair's price scale.

After a warm-up (not measured) long enough for the 5m and 1h strategies to have history, each
simulated minute publishes the three pairs' closed candles, then nine batches of fresh trade
prices and books, one per 100 ms cycle: one cycle in ten closes candles. That is a far
heavier mix than live (a 100 ms loop has 600 cycles a minute and one candle moment), so the
p99 over it is the cost of a candle cycle. Figures printed (milliseconds):

- ``executor_cycle_*``: whole cycles over that mix, Redis reads and PostgreSQL writes included;
- ``executor_candle_cycle_*``: the candle cycles alone;
- ``executor_cycle_live_mix_*``: the same measured cycles weighted to the live mix, one
  candle cycle per 600 (the tick cycles stand for the 599 others of each minute);
- ``executor_decision_*``: the deciding part of every cycle (snapshot, TechnicalAgent,
  strategies; no I/O), as the loop itself measures it; ``executor_candle_decision_*`` that
  of the candle cycles, ``executor_decision_live_mix_p99_ms`` weighted to the live mix.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import psycopg

from streamer.executor import TradingLoop
from triplegain_core.config import Settings
from triplegain_core.hot_state import BookSnapshot, HotStatePublisher, HotStateReader, LastPrice
from triplegain_core.market import US_PER_MINUTE, Candle, datetime_to_us
from triplegain_core.storage.trading_store import TradingStore

PAIRS = {"BTC/USDT": 50_000.0, "XRP/USDT": 1.0, "XRP/BTC": 2e-5}
WARM_MINUTES = 1200  # 240 5m candles and 20 1h candles of history before measuring
TICK_CYCLES = 9
TICK_US = 100_000
LIVE_CYCLES_PER_MINUTE = 600  # a 100 ms loop


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _weighted_percentile(samples: list[tuple[float, float]], fraction: float) -> float:
    """The smallest value with at least ``fraction`` of the total weight at or below it."""
    ordered = sorted(samples)
    target, seen = fraction * sum(w for _, w in ordered), 0.0
    for value, weight in ordered:
        seen += weight
        if seen >= target:
            return value
    return ordered[-1][0]


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
    loop = TradingLoop(Settings(), HotStateReader(redis_client), TradingStore(db), start_stream_id="0")
    for start in range(0, WARM_MINUTES, 100):
        publisher.publish([], [], [c for minute in minutes[start:start + 100] for c in minute], {"ts_us": 0})
    while loop.cycle():
        pass
    loop.stats.cycle_ms.clear()
    loop.stats.decision_ms.clear()

    candle_cycles: list[float] = []
    tick_cycles: list[float] = []
    candle_decisions: list[float] = []
    tick_decisions: list[float] = []
    for minute in minutes[WARM_MINUTES:]:
        publisher.publish([], [], minute, {"ts_us": 0})
        loop.cycle()
        candle_cycles.append(loop.stats.cycle_ms[-1])
        candle_decisions.append(loop.stats.decision_ms[-1])
        close_us = minute[0].close_time_us
        for tick in range(1, TICK_CYCLES + 1):
            ts_us = close_us + tick * TICK_US
            publisher.publish([LastPrice(c.symbol, c.close, ts_us) for c in minute], [], [], {"ts_us": 0},
                              books=[_book(c, ts_us) for c in minute])
            loop.cycle()
            tick_cycles.append(loop.stats.cycle_ms[-1])
            tick_decisions.append(loop.stats.decision_ms[-1])

    cycles, decisions = list(loop.stats.cycle_ms), list(loop.stats.decision_ms)
    # The live mix: one candle cycle per LIVE_CYCLES_PER_MINUTE, the others tick cycles.
    live_weight = (LIVE_CYCLES_PER_MINUTE - 1) / TICK_CYCLES
    live = [(v, 1.0) for v in candle_cycles] + [(v, live_weight) for v in tick_cycles]
    live_decisions = [(v, 1.0) for v in candle_decisions] + [(v, live_weight) for v in tick_decisions]
    assert len(candle_cycles) == len(minutes) - WARM_MINUTES
    assert len(cycles) == len(candle_cycles) * (1 + TICK_CYCLES)
    assert loop.stats.candles == 3 * len(minutes)
    # Every strategy ran on its own account; the accounts traded the measured stretch.
    assert len(loop.accounts) == 1 + len(loop.strategies) >= 12
    assert loop.stats.fills > 0
    print(f"\nBENCH executor_cycle_p50_ms {_percentile(cycles, 0.5):.3f} ms")
    print(f"BENCH executor_cycle_p99_ms {_percentile(cycles, 0.99):.3f} ms")
    print(f"BENCH executor_candle_cycle_p50_ms {_percentile(candle_cycles, 0.5):.3f} ms")
    print(f"BENCH executor_candle_cycle_p99_ms {_percentile(candle_cycles, 0.99):.3f} ms")
    print(f"BENCH executor_cycle_live_mix_p50_ms {_weighted_percentile(live, 0.5):.3f} ms")
    print(f"BENCH executor_cycle_live_mix_p99_ms {_weighted_percentile(live, 0.99):.3f} ms")
    print(f"BENCH executor_decision_p50_ms {_percentile(decisions, 0.5):.3f} ms")
    print(f"BENCH executor_decision_p99_ms {_percentile(decisions, 0.99):.3f} ms")
    print(f"BENCH executor_candle_decision_p50_ms {_percentile(candle_decisions, 0.5):.3f} ms")
    print(f"BENCH executor_candle_decision_p99_ms {_percentile(candle_decisions, 0.99):.3f} ms")
    print(f"BENCH executor_decision_live_mix_p99_ms {_weighted_percentile(live_decisions, 0.99):.3f} ms")
    print(f"({len(cycles)} cycles, {len(candle_cycles)} candle cycles, {len(loop.accounts)} accounts, "
          f"{loop.stats.signals} signals, {loop.stats.fills} fills)")
