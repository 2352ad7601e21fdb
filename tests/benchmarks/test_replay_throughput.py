"""BENCH replay_trades_per_s: trades per second through replay exchange -> streamer -> database."""

from __future__ import annotations

import asyncio
import time

import psycopg
import redis

from streamer.ingest.connection import TradeStreamer
from streamer.replay.exchange import ReplayExchange
from streamer.replay.source import replay_source
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import HotStatePublisher
from triplegain_core.storage.market_store import MarketStore

HOURS = 24.0


def test_replay_trades_per_s(database_url: str, redis_url: str) -> None:
    source = replay_source("sim", "XRP/USDT", hours=HOURS, seed=3)
    trades = list(source.trades)

    async def replay() -> int:
        async with ReplayExchange(trades, source.symbols, speed=0) as exchange:
            settings = Settings(ws_url=exchange.url, symbols=source.symbols)
            with psycopg.connect(database_url, autocommit=True) as conn:
                streamer = TradeStreamer(settings, MarketStore(conn),
                                         HotStatePublisher(redis.Redis.from_url(redis_url)))
                stats = await streamer.run_until(exchange.finished)
                return stats.trades

    started = time.perf_counter()
    received = asyncio.run(replay())
    elapsed = time.perf_counter() - started
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM trades").fetchone()[0]
    assert received == stored == len(trades)
    print(f"\nBENCH replay_trades_per_s {len(trades) / elapsed:.0f} trades/s")
    print(f"BENCH replay_trades {len(trades)} trades")
