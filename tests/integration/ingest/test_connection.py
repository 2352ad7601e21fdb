"""Replay exchange -> TradeStreamer -> PostgreSQL + Redis, on real servers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import psycopg
import pytest
import redis
from websockets.asyncio.server import ServerConnection, serve

from streamer.ingest.connection import ConnectionPolicy, TradeStreamer
from streamer.ingest.rest_repair import GapRepairer, GapRepairs, RestBackfill
from streamer.ingest.stats import StreamerStats
from streamer.replay.exchange import ReplayExchange
from streamer.replay.faults import ReplayFaults
from streamer.replay.rest import ReplayRestExchange, RestFault
from tests.support.quiet_market import SYMBOLS, quiet_market, rest_ohlc
from triplegain_core.adapters.kraken.encode import encode_pong, encode_status, encode_subscribe_ack, encode_trades
from triplegain_core.adapters.kraken.messages import KrakenPingRequest
from triplegain_core.adapters.kraken.parse import parse_client_message
from triplegain_core.adapters.kraken.rest import ExchangeRestConfig, RestMarketData
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import HotStatePublisher, HotStateReader
from triplegain_core.marketdata.candles import QUIET_EVIDENCE_LAG_US, build_candles
from triplegain_core.marketdata.gaps import MissedInterval
from triplegain_core.marketdata.sequencer import TradeMark
from triplegain_core.marketdata.sources import MarketSimulator, trades_from_file
from triplegain_core.model.market import (
    TIMEFRAMES,
    TRADED_SYMBOLS,
    US_PER_MINUTE,
    Candle,
    Side,
    Trade,
)
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.missed_interval_store import MissedIntervalStore

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


def _stored_candles(conn: psycopg.Connection, timeframe: str = "1m") -> list[tuple]:
    frame = MarketStore(conn).read_candles(timeframe=timeframe)
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
    every_timeframe = build_candles(trades, TIMEFRAMES)
    assert stats.trades == len(trades)
    assert len(offline) == 2 * 60 * 3
    assert stats.candles == len(every_timeframe)  # 1m, 5m, 15m, 1h and 1d
    assert stats.rejected_frames == 0 and stats.late_trades == 0
    assert stats.batches >= 2  # the size threshold cut batches before the end
    assert stats.last_trade_ts_us == trades[-1].ts_us
    for timeframe in TIMEFRAMES:
        assert _stored_candles(db, timeframe) == _expected(
            [c for c in every_timeframe if c.timeframe == timeframe]), timeframe
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
    assert (heartbeat["trades"], heartbeat["candles"]) == (len(trades), len(every_timeframe))
    assert stats.book_checksum_failures == 0 and stats.book_updates > 100
    assert stats.ohlc_checked >= len(offline) - 3 and stats.ohlc_mismatches == 0
    books, tickers = reader.books(TRADED_SYMBOLS), reader.tickers(TRADED_SYMBOLS)
    for symbol in TRADED_SYMBOLS:
        last = [t for t in trades if t.symbol == symbol][-1]
        book = books[symbol]
        assert book.bids[0][0] < last.price < book.asks[0][0] and len(book.asks) == 10
        assert tickers[symbol].last == last.price
        assert (tickers[symbol].bid, tickers[symbol].ask) == (book.bids[0][0], book.asks[0][0])
        assert MarketStore(db).book_snapshots(symbol)  # at most one a second, some stored


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


def _binance_1m(shared_data: Path) -> list[tuple]:
    import pandas as pd

    exchange = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet")
    return list(zip(
        exchange["ts"].dt.as_unit("us").astype("int64").tolist(), exchange["open"].tolist(),
        exchange["high"].tolist(), exchange["low"].tolist(), exchange["close"].tolist(),
        exchange["volume"].tolist(), strict=True))


def _assert_the_rest_candles(db: psycopg.Connection, trades: Sequence[Trade]) -> None:
    """Every stored 1m candle of each symbol is the REST stand-in's Kraken OHLC row of that
    minute (quiet ones included), and every minute the feed has passed has one."""
    closed_until = max(t.ts_us for t in trades) - QUIET_EVIDENCE_LAG_US
    closed_until -= closed_until % US_PER_MINUTE
    for symbol in sorted({t.symbol for t in trades}):
        rest = rest_ohlc(list(trades), symbol)
        stored = {c.open_time_us: c for c in MarketStore(db).candles(symbol, "1m")}
        first = min(stored)
        assert stored == {minute: rest[minute] for minute in stored}, symbol
        assert set(stored) >= {m for m in rest if first <= m < closed_until}, symbol
        assert list(stored) == list(range(first, max(stored) + 1, US_PER_MINUTE)), symbol
        assert sum(c.quiet for c in stored.values()) > 1000, symbol


def test_real_trades_give_the_exchange_candles_through_the_wire(
    shared_data: Path, database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    """Binance XRP/ETH trades, replayed (standing for XRP/USDT), end as Binance's 1m candles;
    the quiet minutes Binance's file leaves out are stored as Kraken publishes them."""
    trades = list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", "XRP/USDT"))
    stats = _stream(trades, ["XRP/USDT"], database_url, redis_client)
    assert stats.trades == len(trades) == 12_477
    stored = _stored_candles(db)
    assert len(stored) == 3560
    assert [row[1:7] for row in stored if row[7]] == _binance_1m(shared_data)
    _assert_the_rest_candles(db, trades)


def test_a_quiet_market_gives_the_rest_candles_through_the_wire(
    shared_data: Path, database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    """A busy and a quiet pair of real trades: each quiet minute, inside the run or after the
    quiet pair's last trade (the busy pair's trades show the feed alive), is the REST stand-in's
    candle of that minute, and the higher timeframes follow."""
    trades = quiet_market(shared_data)
    stats = _stream(trades, SYMBOLS, database_url, redis_client)
    assert stats.trades == len(trades) and stats.missed_intervals == 0
    _assert_the_rest_candles(db, trades)
    quiet_pair = [t for t in trades if t.symbol == "XRP/BTC"]
    stored = MarketStore(db).candles("XRP/BTC", "1m")
    assert stored[-1].open_time_us > quiet_pair[-1].ts_us + 10 * US_PER_MINUTE  # trailing quiet
    every = build_candles(trades, TIMEFRAMES)
    for timeframe in TIMEFRAMES:
        assert _stored_candles(db, timeframe) == _expected(
            [c for c in every if c.timeframe == timeframe]), timeframe


def test_malformed_frames_are_counted_and_the_stream_goes_on(
    database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    """A hostile stand-in mixes garbage with good trades, then closes the connection; the
    streamer reconnects once and gets all of it again: the repeated trades are duplicates."""
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
                streamer = TradeStreamer(
                    settings, MarketStore(conn), HotStatePublisher(redis_client),
                    policy=ConnectionPolicy(max_reconnects=1, backoff_initial_s=0.01))
                return await streamer.run_until()

    stats = asyncio.run(scenario())
    assert stats.rejected_frames == 2 * len(garbage)
    assert stats.trades == len(good)
    assert stats.duplicate_trades == len(good)
    assert (stats.connections, stats.reconnects) == (2, 1)
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


_FAULTS = {
    "drop_connection": ReplayFaults(drop_connection_every_s=0.7),
    "stall_heartbeats": ReplayFaults(stall_every_s=0.8, stall_for_s=0.5),
    "drop_frames": ReplayFaults(drop_frame_rate=0.02),
    "duplicate_frames": ReplayFaults(duplicate_frame_rate=0.05),
    "reorder_frames": ReplayFaults(reorder_frame_rate=0.05),
    "corrupt_checksum": ReplayFaults(corrupt_checksum_rate=0.03),
    "malformed_json": ReplayFaults(malformed_frame_rate=0.02),
    "all": ReplayFaults(seed=7, drop_connection_every_s=1.1, stall_every_s=1.7, stall_for_s=0.5,
                        drop_frame_rate=0.01, duplicate_frame_rate=0.02,
                        reorder_frame_rate=0.02, malformed_frame_rate=0.01,
                        corrupt_checksum_rate=0.02),
}
_POLICY = ConnectionPolicy(stale_after_s=0.3, backoff_initial_s=0.01, backoff_max_s=0.05,
                           gap_patience_s=0.05)


def _stream_with_faults(trades: Sequence[Trade], symbols: Sequence[str], faults: ReplayFaults,
                        speed: float, database_url: str, client: redis.Redis
                        ) -> tuple[StreamerStats, ReplayExchange, list[MissedInterval]]:
    missed: list[MissedInterval] = []

    async def scenario() -> tuple[StreamerStats, ReplayExchange]:
        async with ReplayExchange(trades, symbols, speed=speed, heartbeat_interval_s=0.1,
                                  faults=faults) as exchange:
            settings = Settings(ws_url=exchange.url, symbols=tuple(symbols),
                                write_batch_size=400)
            with psycopg.connect(database_url, autocommit=True) as conn:
                streamer = TradeStreamer(settings, MarketStore(conn), HotStatePublisher(client),
                                         policy=_POLICY, on_missed_interval=missed.append)
                stats = await streamer.run_until(exchange.finished)
                return stats, exchange

    stats, exchange = asyncio.run(scenario())
    return stats, exchange, missed


@pytest.mark.parametrize("fault", sorted(_FAULTS))
def test_faults_lose_no_trade(fault: str, database_url: str, redis_client: redis.Redis,
                              db: psycopg.Connection) -> None:
    """Each fault of the replay exchange, over a simulated market of three pairs: the stored
    candles are the candles built offline from the same trades."""
    trades = list(MarketSimulator(seed=11, start_us=START, duration_s=40 * 60))
    faults = _FAULTS[fault]
    # Paced (40 minutes in about 3 s) so the wall-clock faults strike several times.
    stats, exchange, missed = _stream_with_faults(trades, TRADED_SYMBOLS, faults, 800.0,
                                                  database_url, redis_client)
    injected = exchange.faults_injected
    assert missed == [] and stats.missed_intervals == 0
    assert stats.trades == len(trades)
    assert _stored_candles(db) == _expected(build_candles(trades))
    assert MarketStore(db).count_rows("trades") == len(trades)
    assert stats.ohlc_mismatches == 0 and stats.ohlc_checked > 0
    if fault == "drop_connection":
        assert injected.connections_dropped >= 1 and stats.reconnects >= 1
    elif fault == "stall_heartbeats":
        assert injected.stalls >= 1 and stats.stale_connections >= 1
    elif fault == "drop_frames":
        assert injected.frames_dropped > 0 and stats.gap_resyncs > 0
    elif fault == "duplicate_frames":
        assert injected.frames_duplicated > 0 and stats.duplicate_trades > 0
    elif fault == "reorder_frames":
        assert injected.frames_reordered > 0 and stats.reordered_trades > 0
    elif fault == "corrupt_checksum":
        assert injected.checksums_corrupted > 0
        # A corrupted update that reaches a book already awaiting its fresh snapshot is
        # skipped, not checked; no failure comes without a corruption.
        assert 0 < stats.book_checksum_failures <= injected.checksums_corrupted
        assert stats.book_snapshots > len(TRADED_SYMBOLS)
    elif fault == "malformed_json":
        assert injected.frames_malformed > 0
        assert stats.rejected_frames == injected.frames_malformed


def test_a_starved_event_loop_is_no_stale_connection(
    database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    """A loaded machine starves the event loop for longer than ``stale_after_s`` now and then
    (here: blocking it 0.4 s every 0.3 s of a 0.3 s limit). The frames sent meanwhile wait in
    the socket; the watchdog must not take that for a dead connection, whose reconnection
    would throw them away (a malformed frame never counted, trades beyond the snapshot)."""
    trades = list(MarketSimulator(seed=11, start_us=START, duration_s=40 * 60))
    faults = _FAULTS["malformed_json"]

    async def scenario() -> tuple[StreamerStats, ReplayExchange, int]:
        async with ReplayExchange(trades, TRADED_SYMBOLS, speed=800.0, heartbeat_interval_s=0.1,
                                  faults=faults) as exchange:
            settings = Settings(ws_url=exchange.url, symbols=tuple(TRADED_SYMBOLS),
                                write_batch_size=400)
            starved = 0

            async def starve() -> None:
                nonlocal starved
                while True:
                    await asyncio.sleep(0.3)
                    time.sleep(0.4)  # blocks the loop, as a loaded machine's scheduler does
                    starved += 1

            with psycopg.connect(database_url, autocommit=True) as conn:
                streamer = TradeStreamer(settings, MarketStore(conn),
                                         HotStatePublisher(redis_client), policy=_POLICY)
                starver = asyncio.create_task(starve())
                try:
                    stats = await streamer.run_until(exchange.finished)
                finally:
                    starver.cancel()
                return stats, exchange, starved

    stats, exchange, starved = asyncio.run(scenario())
    assert starved >= 3
    assert (stats.stale_connections, stats.reconnects, stats.missed_intervals) == (0, 0, 0)
    assert stats.rejected_frames == exchange.faults_injected.frames_malformed > 0
    assert stats.trades == len(trades)
    assert _stored_candles(db) == _expected(build_candles(trades))


def test_real_trades_with_every_fault_give_the_exchange_candles(
    shared_data: Path, database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    """Binance XRP/ETH trades through a replay exchange with every fault on: still exactly
    Binance's 1m candles, and the quiet minutes as the REST stand-in gives them."""
    trades = list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", "XRP/USDT"))
    stats, exchange, missed = _stream_with_faults(trades, ["XRP/USDT"], _FAULTS["all"], 40_000.0,
                                                  database_url, redis_client)
    injected = exchange.faults_injected
    assert injected.frames_dropped and injected.frames_duplicated and injected.frames_reordered
    assert injected.frames_malformed and injected.checksums_corrupted
    assert injected.connections_dropped and injected.stalls
    assert missed == [] and stats.trades == len(trades) == 12_477
    stored = _stored_candles(db)
    assert [row[1:7] for row in stored if row[7]] == _binance_1m(shared_data)
    _assert_the_rest_candles(db, trades)


_HOLE_TRADES = [Trade("XRP/USDT", i, START + i * 1_000_000, 0.5 + i / 10_000, 1.0, Side.BUY)
                for i in range(1, 121)]
_LOST = range(11, 71)


def _lossy_exchange(trades: list[Trade], lost: range, done: asyncio.Event
                    ) -> Callable[[ServerConnection], Awaitable[None]]:
    """A one-symbol exchange that publishes ``trades`` once per connection but never sends
    those of ids ``lost``, then sets ``done``; its snapshots hold the last 50 published."""

    async def handler(connection: ServerConnection) -> None:
        published: list[Trade] = []
        await connection.send(encode_status())
        async for raw in connection:
            request = parse_client_message(raw)
            if isinstance(request, KrakenPingRequest):
                await connection.send(encode_pong(request.req_id))
                continue
            await connection.send(encode_subscribe_ack("XRP/USDT", req_id=request.req_id,
                                                       method=request.method))
            if request.method != "subscribe":
                continue
            if request.snapshot:
                await connection.send(encode_trades(published[-50:], kind="snapshot"))
            if not published:
                for trade in trades:
                    published.append(trade)
                    if trade.trade_id not in lost:
                        await connection.send(encode_trades([trade]))
                done.set()

    return handler


def test_a_hole_longer_than_the_snapshot_is_handed_to_gap_repair(
    database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    """An exchange that loses 60 trades in a row: the 50-trade snapshot cannot bring them
    back, so the streamer reports exactly that hole through its hook and goes on."""
    trades, lost, done = _HOLE_TRADES, _LOST, asyncio.Event()
    handler = _lossy_exchange(trades, lost, done)
    missed: list[MissedInterval] = []

    async def scenario() -> StreamerStats:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            settings = Settings(ws_url=f"ws://127.0.0.1:{port}/v2", symbols=("XRP/USDT",))
            with psycopg.connect(database_url, autocommit=True) as conn:
                streamer = TradeStreamer(
                    settings, MarketStore(conn), HotStatePublisher(redis_client),
                    policy=ConnectionPolicy(channels=("trade",), gap_patience_s=0.05),
                    on_missed_interval=missed.append)
                return await streamer.run_until(done)

    stats = asyncio.run(scenario())
    assert missed == [MissedInterval("XRP/USDT", trades[9].ts_us, trades[70].ts_us + 1, 11, 70,
                                     "gap")]
    assert missed[0].trades == 60
    assert (stats.missed_intervals, stats.missed_trades) == (1, 60)
    kept = [t for t in trades if t.trade_id not in lost]
    assert stats.trades == len(kept)
    assert MarketStore(db).count_rows("trades") == len(kept)
    assert _stored_candles(db) == _expected(build_candles(kept))


def test_a_hole_longer_than_the_snapshot_is_backfilled_over_rest_in_order(
    database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    """The same lost 60 trades, with a REST backfill (real ccxt against the REST stand-in,
    answering an HTTP 500 first): the trades after the hole wait for the missing ones, so
    every candle is that of the full stream and nothing is left to out-of-band repair."""
    trades, lost, done = _HOLE_TRADES, _LOST, asyncio.Event()
    handler = _lossy_exchange(trades, lost, done)
    missed: list[MissedInterval] = []

    async def scenario() -> tuple[StreamerStats, int]:
        async with serve(handler, "127.0.0.1", 0) as server, \
                ReplayRestExchange(trades, ["XRP/USDT"]) as rest_server:
            rest_server.inject(RestFault.HTTP_500, endpoint="Trades")
            port = server.sockets[0].getsockname()[1]
            settings = Settings(ws_url=f"ws://127.0.0.1:{port}/v2", symbols=("XRP/USDT",))
            config = ExchangeRestConfig(base_url=rest_server.url, rate_limit_ms=1,
                                        backoff_s=0.001, page_size=25)
            with psycopg.connect(database_url, autocommit=True) as conn:
                async with RestMarketData(config) as rest:
                    streamer = TradeStreamer(
                        settings, MarketStore(conn), HotStatePublisher(redis_client),
                        policy=ConnectionPolicy(channels=("trade",), gap_patience_s=0.05),
                        on_missed_interval=missed.append, backfill=RestBackfill(rest))
                    stats = await streamer.run_until(done)
            return stats, rest_server.requests["Trades"]

    stats, trade_calls = asyncio.run(scenario())
    assert missed == []
    assert (stats.missed_intervals, stats.missed_trades, stats.backfilled_trades) == (1, 60, 60)
    assert trade_calls >= 4  # the 500, then 25-trade pages
    assert stats.trades == len(trades)
    assert MarketStore(db).trades("XRP/USDT") == trades
    for timeframe in TIMEFRAMES:
        assert _stored_candles(db, timeframe) == _expected(
            [c for c in build_candles(trades, TIMEFRAMES) if c.timeframe == timeframe])


def test_a_hole_the_backfill_cannot_fill_is_retried_until_filled(
    database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    """The same lost 60 trades, with REST failing for a while (five HTTP 500 in a row): the
    in-stream backfill gives the hole up, the stream goes on, and the gap repair retries it
    with a backoff until REST answers; then every trade and candle is that of the full
    stream, and the hole is recorded as filled after its failed attempts."""
    trades, lost, published = _HOLE_TRADES, _LOST, asyncio.Event()
    handler = _lossy_exchange(trades, lost, published)

    async def scenario() -> tuple[StreamerStats, GapRepairs]:
        async with serve(handler, "127.0.0.1", 0) as server, \
                ReplayRestExchange(trades, ["XRP/USDT"]) as rest_server:
            rest_server.inject(RestFault.HTTP_500, times=5, endpoint="Trades")
            port = server.sockets[0].getsockname()[1]
            settings = Settings(ws_url=f"ws://127.0.0.1:{port}/v2", symbols=("XRP/USDT",),
                                write_interval_s=0.05)
            config = ExchangeRestConfig(base_url=rest_server.url, rate_limit_ms=1,
                                        max_retries=0, page_size=25)
            with psycopg.connect(database_url, autocommit=True) as conn, \
                    psycopg.connect(database_url, autocommit=True) as repair_conn:
                async with RestMarketData(config) as rest:
                    repairs = GapRepairs(
                        GapRepairer(rest, repair_conn), MissedIntervalStore(repair_conn),
                        closed_before=lambda symbol, tf: streamer.closed_before(symbol, tf),
                        write_candles=lambda candles: streamer.write_candles(candles),
                        backoff_s=0.02, poll_s=0.02)
                    streamer = TradeStreamer(
                        settings, MarketStore(conn), HotStatePublisher(redis_client),
                        policy=ConnectionPolicy(channels=("trade",), gap_patience_s=0.05),
                        backfill=RestBackfill(rest), on_missed_interval=repairs.submit)
                    repairing_done, done = asyncio.Event(), asyncio.Event()
                    repairing = asyncio.create_task(repairs.run(repairing_done))
                    streaming = asyncio.create_task(streamer.run_until(done))
                    await published.wait()

                    async def filled() -> None:
                        while repairs.filled == 0:
                            await asyncio.sleep(0.02)

                    # Bounded: a repair that gave up would leave this waiting for ever.
                    await asyncio.wait_for(filled(), 60.0)
                    done.set()
                    stats = await streaming
                    repairing_done.set()
                    await repairing
                    await repairs.finish()
            return stats, repairs

    stats, repairs = asyncio.run(scenario())
    assert (stats.missed_intervals, stats.missed_trades, stats.backfilled_trades) == (1, 60, 0)
    assert repairs.failed_attempts >= 4 and repairs.filled == 1 and repairs.open == 0
    assert db.execute("SELECT attempts, filled_at IS NOT NULL FROM missed_intervals"
                      ).fetchall() == [(repairs.failed_attempts + 1, True)]
    assert MarketStore(db).trades("XRP/USDT") == trades
    every = build_candles(trades, TIMEFRAMES)
    for timeframe in TIMEFRAMES:
        assert _stored_candles(db, timeframe) == _expected(
            [c for c in every if c.timeframe == timeframe]), timeframe


def test_resume_from_reports_the_hole_across_a_restart(
    database_url: str, redis_client: redis.Redis
) -> None:
    """A streamer restarted with the last stored trade learns, from the first trade it sees,
    which trades it missed while it was down."""
    trades = [Trade("BTC/USDT", i, START + i * 500_000, 60_000.0 + i, 0.1, Side.SELL)
              for i in range(1, 301)]
    missed: list[MissedInterval] = []

    async def scenario() -> StreamerStats:
        async with ReplayExchange(trades[200:], ["BTC/USDT"], speed=0) as exchange:
            settings = Settings(ws_url=exchange.url, symbols=("BTC/USDT",))
            with psycopg.connect(database_url, autocommit=True) as conn:
                streamer = TradeStreamer(
                    settings, MarketStore(conn), HotStatePublisher(redis_client),
                    policy=ConnectionPolicy(gap_patience_s=0.05),
                    on_missed_interval=missed.append,
                    resume_from={"BTC/USDT": TradeMark(trades[149].trade_id,
                                                       trades[149].ts_us)})
                return await streamer.run_until(exchange.finished)

    stats = asyncio.run(scenario())
    assert missed == [MissedInterval("BTC/USDT", trades[149].ts_us, trades[200].ts_us + 1,
                                     151, 200, "reconnect")]
    assert stats.trades == 100 and stats.missed_trades == 50


def _exchange_that_ends_while_disconnected(trades: list[Trade], done: asyncio.Event
                                           ) -> Callable[[ServerConnection], Awaitable[None]]:
    """An exchange that drops its first connection with the last five trades unsent, publishes
    them to nobody and ends (``done``); a later connection gets the 50-trade snapshot and pongs."""
    connections = 0

    async def handler(connection: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        await connection.send(encode_status())
        async for raw in connection:
            request = parse_client_message(raw)
            if isinstance(request, KrakenPingRequest):
                await connection.send(encode_pong(request.req_id))
                continue
            await connection.send(encode_subscribe_ack("XRP/USDT", req_id=request.req_id, method=request.method))
            if request.method != "subscribe":
                continue
            if first:
                for trade in trades[:-5]:
                    await connection.send(encode_trades([trade]))
                await connection.close(1011, "dropped before the last trades")
                done.set()  # the last trades went out while nobody was connected
                return
            if request.snapshot:
                await connection.send(encode_trades(trades[-50:], kind="snapshot"))

    return handler


def test_a_stream_that_ends_while_disconnected_connects_once_more_to_drain(
    database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    """The end of a replay coming while the connection is down: the trades sent meanwhile are
    fetched by one more connection's snapshot, not lost."""
    trades, done = _HOLE_TRADES, asyncio.Event()

    async def scenario() -> StreamerStats:
        async with serve(_exchange_that_ends_while_disconnected(trades, done), "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            settings = Settings(ws_url=f"ws://127.0.0.1:{port}/v2", symbols=("XRP/USDT",))
            with psycopg.connect(database_url, autocommit=True) as conn:
                streamer = TradeStreamer(settings, MarketStore(conn), HotStatePublisher(redis_client),
                                         policy=ConnectionPolicy(channels=("trade",), gap_patience_s=0.05))
                return await streamer.run_until(done)

    stats = asyncio.run(scenario())
    assert stats.trades == len(trades) and stats.connections == 2
    assert MarketStore(db).count_rows("trades") == len(trades)
