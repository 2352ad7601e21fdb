"""Replay exchange -> TradeStreamer -> PostgreSQL + Redis, on real servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import psycopg
import pytest
import redis
from websockets.asyncio.server import ServerConnection, serve

from streamer.ingest import StreamerStats, TradeStreamer
from streamer.replay_exchange import ReplayExchange
from triplegain_core.candles import build_candles
from triplegain_core.config import Settings
from triplegain_core.hot_state import HotStatePublisher, HotStateReader
from triplegain_core.kraken_v2 import (
    encode_pong,
    encode_status,
    encode_subscribe_ack,
    encode_trades,
    parse_client_message,
)
from triplegain_core.market import TRADED_SYMBOLS, Candle, Side, Trade
from triplegain_core.market_sources import MarketSimulator, trades_from_file
from triplegain_core.storage.market_store import MarketStore

pytestmark = pytest.mark.integration

START = 1_767_571_200_000_000


def _stream(trades: Sequence[Trade], symbols: Sequence[str], database_url: str,
            client: redis.Redis, batch_size: int = 500) -> StreamerStats:
    async def scenario() -> StreamerStats:
        async with ReplayExchange(trades, symbols, speed=0) as exchange:
            settings = Settings(ws_url=exchange.url, symbols=tuple(symbols),
                                write_batch_size=batch_size)
            with psycopg.connect(database_url, autocommit=True) as conn:
                streamer = TradeStreamer(settings, MarketStore(conn), HotStatePublisher(client))
                return await streamer.run_until(exchange.finished)

    return asyncio.run(scenario())


def _stored_candles(conn: psycopg.Connection) -> list[tuple]:
    frame = MarketStore(conn).read_candles()
    return sorted(
        (r.symbol, int(r.open_time.value // 1000), r.open, r.high, r.low, r.close, r.volume,
         r.trade_count) for r in frame.itertuples()
    )


def _expected(candles: list[Candle]) -> list[tuple]:
    return sorted((c.symbol, c.open_time_us, c.open, c.high, c.low, c.close, c.volume,
                   c.trade_count) for c in candles)


def test_simulated_market_lands_in_postgres_and_redis(
    database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    trades = list(MarketSimulator(seed=4, start_us=START, duration_s=2 * 3600))
    stats = _stream(trades, TRADED_SYMBOLS, database_url, redis_client, batch_size=300)

    offline = build_candles(trades)
    assert stats.trades == len(trades)
    assert stats.candles == len(offline) == 2 * 60 * 3
    assert stats.rejected_frames == 0 and stats.late_trades == 0
    assert stats.batches >= 2  # the size threshold cut batches before the end
    assert stats.last_trade_ts_us == trades[-1].ts_us
    assert _stored_candles(db) == _expected(offline)
    assert MarketStore(db).count_rows("trades") == len(trades)

    reader = HotStateReader(redis_client)
    prices = reader.last_prices(TRADED_SYMBOLS)
    for symbol in TRADED_SYMBOLS:
        last = [t for t in trades if t.symbol == symbol][-1]
        assert (prices[symbol].price, prices[symbol].ts_us) == (last.price, last.ts_us)
    _, closed = reader.closed_candles_after("0", count=10_000)
    assert sorted(closed, key=lambda c: (c.symbol, c.open_time_us)) == sorted(
        offline, key=lambda c: (c.symbol, c.open_time_us))
    heartbeat = reader.heartbeat()
    assert heartbeat is not None
    assert (heartbeat["trades"], heartbeat["candles"]) == (len(trades), len(offline))


def test_replaying_twice_stores_each_row_once(
    database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    trades = list(MarketSimulator(seed=9, start_us=START, duration_s=1800,
                                  symbols=("XRP/BTC", "XRP/USDT")))
    symbols = ("XRP/USDT", "XRP/BTC")
    _stream(trades, symbols, database_url, redis_client)
    first = _stored_candles(db)
    _stream(trades, symbols, database_url, redis_client, batch_size=17)
    assert _stored_candles(db) == first == _expected(build_candles(trades))
    assert MarketStore(db).count_rows("trades") == len(trades)


def test_real_trades_give_the_exchange_candles_through_the_wire(
    shared_data: Path, database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    """Binance XRP/ETH trades, replayed (standing for XRP/USDT), end as Binance's 1m candles."""
    import pandas as pd

    trades = list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", "XRP/USDT"))
    stats = _stream(trades, ["XRP/USDT"], database_url, redis_client)
    assert stats.trades == len(trades) == 12_477
    exchange = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet")
    stored = _stored_candles(db)
    assert len(stored) == 2469
    assert [row[1:7] for row in stored] == list(zip(
        exchange["ts"].dt.as_unit("us").astype("int64").tolist(), exchange["open"].tolist(),
        exchange["high"].tolist(), exchange["low"].tolist(), exchange["close"].tolist(),
        exchange["volume"].tolist(), strict=True))


def test_malformed_frames_are_counted_and_the_stream_goes_on(
    database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    """A hostile stand-in mixes garbage with good trades, then closes the connection."""
    good = [Trade("XRP/USDT", i, START + i * 7_000_000, 0.5 + i / 1000, 1.0 + i, Side.BUY)
            for i in range(1, 31)]
    garbage = [
        "not json at all", '{"channel":"trade","type":"update","data":[{"price":1}]}',
        json.dumps({"channel": "trade", "type": "update", "data": [
            {"symbol": "XRP/USDT", "side": "buy", "price": float("nan"), "qty": 1.0,
             "ord_type": "limit", "trade_id": 1, "timestamp": "2026-01-05T00:00:00Z"}]},
            allow_nan=True),
        encode_trades([Trade("DOGE/USDT", 1, START, 0.1, 1.0, Side.SELL)]),
        b"\x00\xff", '{"channel":"book","type":"snapshot","data":[]}',
    ]

    async def handler(connection: ServerConnection) -> None:
        await connection.send(encode_status())
        request = parse_client_message(await connection.recv())
        for symbol in request.symbols:
            await connection.send(encode_subscribe_ack(symbol, req_id=request.req_id))
        for i, trade in enumerate(good):
            await connection.send(encode_trades([trade]))
            if i < len(garbage):
                await connection.send(garbage[i])
        await connection.send(encode_pong(123))  # unsolicited: must be ignored
        await connection.close()

    async def scenario() -> StreamerStats:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            settings = Settings(ws_url=f"ws://127.0.0.1:{port}/v2", symbols=("XRP/USDT",),
                                write_batch_size=4)
            with psycopg.connect(database_url, autocommit=True) as conn:
                streamer = TradeStreamer(settings, MarketStore(conn),
                                         HotStatePublisher(redis_client))
                return await streamer.run_until()

    stats = asyncio.run(scenario())
    assert stats.rejected_frames == len(garbage)
    assert stats.trades == len(good)
    assert MarketStore(db).count_rows("trades") == len(good)
    assert _stored_candles(db) == _expected(build_candles(good))


def test_stop_flushes_forming_candles(
    database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    trades = list(MarketSimulator(seed=6, start_us=START, duration_s=300,
                                  symbols=("BTC/USDT",)))

    async def scenario() -> StreamerStats:
        async with ReplayExchange(trades, ["BTC/USDT"], speed=0) as exchange:
            settings = Settings(ws_url=exchange.url, symbols=("BTC/USDT",),
                                write_batch_size=10_000, write_interval_s=30.0)
            with psycopg.connect(database_url, autocommit=True) as conn:
                streamer = TradeStreamer(settings, MarketStore(conn),
                                         HotStatePublisher(redis_client))
                task = asyncio.create_task(streamer.run_until())
                await exchange.finished.wait()
                streamer.stop()
                return await task

    stats = asyncio.run(scenario())
    assert stats.trades == len(trades)
    assert stats.batches == 1  # neither threshold was reached: everything in the final batch
    assert _stored_candles(db) == _expected(build_candles(trades))
