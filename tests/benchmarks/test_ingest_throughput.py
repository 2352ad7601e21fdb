"""BENCH ingest_frames_per_s: Kraken v2 trade frames parsed and aggregated into candles per
second on one core (parse + CandleAggregator of the streamer's five timeframes, no network,
no database); also through the streamer's whole frame handler (parse + trade-id sequencer +
aggregator + batching queue).
Rates are per CPU second of this process (``time.process_time``), the best of a few rounds,
so a busy machine does not lower them; the wall-clock rate is printed beside them.

BENCH streamer_peak_rss_mb: the streamer's process peak RSS over a long replay (72 simulated
hours of the three pairs, replay exchange -> TradeStreamer -> MarketStore and Redis on the
embedded servers; the exchange runs in the same process), with RSS printed at the start, along
the way and at the end to show it stays flat.
"""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import psycopg
import redis

from streamer.ingest.connection import TradeStreamer
from streamer.replay.exchange import ReplayExchange
from triplegain_core.adapters.kraken.encode import encode_trades
from triplegain_core.adapters.kraken.parse import parse_server_message
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import HotStatePublisher
from triplegain_core.marketdata.candles import CandleAggregator
from triplegain_core.marketdata.sources import MarketSimulator
from triplegain_core.model.market import TIMEFRAMES, TRADED_SYMBOLS, US_PER_SECOND
from triplegain_core.storage.market_store import MarketStore

START = 1_767_571_200_000_000
FRAME_HOURS = 24
RSS_HOURS = 72
ROUNDS = 5


def _frames() -> list[str]:
    trades = MarketSimulator(seed=3, start_us=START, duration_s=FRAME_HOURS * 3600)
    return [encode_trades([trade]) for trade in trades]  # Kraken's usual one-trade update


def test_ingest_frames_per_s(database_url: str, redis_url: str) -> None:
    frames = _frames()
    best = best_wall = 0.0
    for _ in range(ROUNDS):
        aggregator = CandleAggregator(TIMEFRAMES)
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        for frame in frames:
            for trade in parse_server_message(frame).trades:
                aggregator.add(trade)
        best = max(best, len(frames) / (time.process_time() - cpu))
        best_wall = max(best_wall, len(frames) / (time.perf_counter() - wall))
    assert aggregator.late_trades == 0 and aggregator.duplicate_trades == 0
    print(f"\nBENCH ingest_frames_per_s {best:.0f} frames/s")
    print(f"  (wall clock on this machine at its current load: {best_wall:.0f} frames/s)")

    best_streamer = 0.0
    with psycopg.connect(database_url, autocommit=True) as conn:
        for _ in range(ROUNDS):
            settings = Settings(ws_url="ws://127.0.0.1:9/v2", symbols=TRADED_SYMBOLS)
            streamer = TradeStreamer(settings, MarketStore(conn),
                                     HotStatePublisher(redis.Redis.from_url(redis_url)))
            gc.collect()
            cpu = time.process_time()
            for frame in frames:
                streamer.on_frame(frame)
            best_streamer = max(best_streamer, len(frames) / (time.process_time() - cpu))
            assert streamer.stats.trades == len(frames)
            assert streamer.stats.rejected_frames == 0
    print(f"BENCH ingest_streamer_frames_per_s {best_streamer:.0f} frames/s")
    print(f"BENCH ingest_frames {len(frames)} frames")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def test_streamer_peak_rss_mb(database_url: str, redis_url: str) -> None:
    trades = MarketSimulator(seed=5, start_us=START, duration_s=RSS_HOURS * 3600)
    samples: list[tuple[float, float]] = []  # (simulated hours done, RSS MB)

    async def replay() -> int:
        async with ReplayExchange(trades, TRADED_SYMBOLS, speed=0) as exchange:
            settings = Settings(ws_url=exchange.url, symbols=TRADED_SYMBOLS)
            with psycopg.connect(database_url, autocommit=True) as conn:
                streamer = TradeStreamer(settings, MarketStore(conn),
                                         HotStatePublisher(redis.Redis.from_url(redis_url)))

                async def sample() -> None:
                    shown = 0
                    while True:
                        await asyncio.sleep(0.5)
                        last = streamer.stats.last_trade_ts_us
                        hours = (last - START) / US_PER_SECOND / 3600 if last else 0.0
                        samples.append((hours, _rss_mb()))
                        if hours >= shown + 12:
                            shown = int(hours // 12) * 12
                            print(f"  {hours:5.1f} of {RSS_HOURS} simulated hours, "
                                  f"{streamer.stats.trades} trades, RSS {_rss_mb():.1f} MB",
                                  flush=True)

                sampler = asyncio.create_task(sample())
                try:
                    stats = await streamer.run_until(exchange.finished)
                finally:
                    sampler.cancel()
                return stats.trades

    gc.collect()
    start_rss = _rss_mb()
    print(f"\nRSS at start {start_rss:.1f} MB")
    received = asyncio.run(replay())
    end_rss = _rss_mb()
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM trades").fetchone()[0]
    assert received == stored > 0
    peak = max(rss for _, rss in samples)
    first_day = [rss for hours, rss in samples if 1 <= hours <= 24]
    last_day = [rss for hours, rss in samples if hours >= RSS_HOURS - 24]
    print(f"RSS at end {end_rss:.1f} MB; first simulated day max "
          f"{max(first_day, default=0):.1f} MB, last simulated day max "
          f"{max(last_day, default=0):.1f} MB; {received} trades")
    print(f"BENCH streamer_peak_rss_mb {peak:.1f} MB")
