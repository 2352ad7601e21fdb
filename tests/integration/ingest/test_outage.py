"""The streamer survives PostgreSQL or Redis going away mid-replay: nothing lost, nothing twice.

Each test starts its own embedded servers (never the machine's shared ones) and takes one down
for a few seconds while real trades are replayed through the exchange stand-in.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from streamer.ingest.connection import TradeStreamer
from streamer.ingest.stats import StreamerStats
from streamer.replay.exchange import ReplayExchange
from tests.support.outage import OwnServers
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import HotStatePublisher, closed_candles_stream
from triplegain_core.marketdata.sources import trades_from_file
from triplegain_core.model.market import Trade
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.migrate import migrate

pytestmark = pytest.mark.integration

SYMBOL = "XRP/USDT"
SPEED = 30_000.0  # the 2.5 days of trades in about 7 s


@pytest.fixture
def own_servers(tmp_path: Path) -> Iterator[OwnServers]:
    servers = OwnServers(tmp_path / "servers")
    try:
        migrate(servers.database_url)
        yield servers
    finally:
        servers.close()


def replay_with_outage(servers: OwnServers, trades: list[Trade], data_dir: Path, *,
                       stop: Callable[[], None], start: Callable[[], None],
                       after_s: float, outage_s: float,
                       before_stop: Callable[[], None] = lambda: None) -> StreamerStats:
    """Replay ``trades`` through the streamer; ``after_s`` in, ``stop`` a server and
    ``start`` it again ``outage_s`` later."""

    async def scenario() -> StreamerStats:
        async with ReplayExchange(trades, [SYMBOL], speed=SPEED) as exchange:
            settings = Settings(ws_url=exchange.url, symbols=(SYMBOL,), data_dir=data_dir,
                                write_batch_size=200)
            with psycopg.connect(servers.database_url, autocommit=True) as conn:
                streamer = TradeStreamer(
                    settings, MarketStore(conn),
                    HotStatePublisher(redis.Redis.from_url(servers.redis_url)),
                    reconnect_store=lambda: MarketStore(
                        psycopg.connect(servers.database_url, autocommit=True)))
                run = asyncio.create_task(streamer.run_until(exchange.finished))
                await asyncio.sleep(after_s)
                before_stop()
                await asyncio.to_thread(stop)
                await asyncio.sleep(outage_s)
                await asyncio.to_thread(start)
                return await run

    return asyncio.run(scenario())


def stored(servers: OwnServers) -> tuple[list[tuple[int, int]], dict[tuple[str, int], tuple]]:
    with psycopg.connect(servers.database_url) as conn:
        trade_rows = conn.execute(
            "SELECT trade_id, count(*) FROM trades GROUP BY trade_id ORDER BY trade_id").fetchall()
        store = MarketStore(conn)
        candles = {(tf, c.open_time_us): (c.open, c.high, c.low, c.close, c.volume,
                                          c.trade_count)
                   for tf in ("1m", "5m") for c in store.candles(SYMBOL, tf)}
    return trade_rows, candles


def uninterrupted(trades: list[Trade], tmp_path: Path) -> dict[tuple[str, int], tuple]:
    servers = OwnServers(tmp_path / "reference")
    try:
        migrate(servers.database_url)
        replay_with_outage(servers, trades, tmp_path / "ref-data", stop=lambda: None,
                           start=lambda: None, after_s=0, outage_s=0)
        return stored(servers)[1]
    finally:
        servers.close()


@pytest.fixture(scope="module")
def real_trades(shared_data: Path) -> list[Trade]:
    return list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", SYMBOL))


def test_a_postgres_outage_mid_replay_loses_no_row_and_stores_none_twice(
    own_servers: OwnServers, real_trades: list[Trade], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    stats = replay_with_outage(own_servers, real_trades, tmp_path / "data",
                               stop=own_servers.stop_postgres, start=own_servers.start_postgres,
                               after_s=2.0, outage_s=3.0)
    assert stats.trades == len(real_trades)
    trade_rows, candles = stored(own_servers)
    assert [trade_id for trade_id, _ in trade_rows] == sorted(t.trade_id for t in real_trades)
    assert {n for _, n in trade_rows} == {1}
    assert candles == uninterrupted(real_trades, tmp_path)
    holding = [r.message for r in caplog.records if "PostgreSQL unavailable" in r.message]
    assert len(holding) == 1, holding
    assert any("PostgreSQL is back" in r.message for r in caplog.records)


def test_a_redis_outage_mid_replay_loses_no_row_and_no_closed_candle(
    own_servers: OwnServers, real_trades: list[Trade], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    client = redis.Redis.from_url(own_servers.redis_url)
    last_seen: list[int] = []

    def note_last_published() -> None:
        entries = client.xrevrange(closed_candles_stream("1m"), count=1)
        assert entries, "the outage must come after the first closed candles"
        last_seen.append(json.loads(entries[0][1][b"c"])["open_time_us"])

    stats = replay_with_outage(own_servers, real_trades, tmp_path / "data",
                               stop=own_servers.stop_redis, start=own_servers.start_redis,
                               after_s=2.0, outage_s=3.0, before_stop=note_last_published)
    assert stats.trades == len(real_trades)
    trade_rows, candles = stored(own_servers)
    assert [n for _, n in trade_rows] == [1] * len(real_trades)
    assert candles == uninterrupted(real_trades, tmp_path)
    # Redis came back empty: every candle closed since the last one seen before is on it.
    client = redis.Redis.from_url(own_servers.redis_url)
    published = {json.loads(fields[b"c"])["open_time_us"]
                 for _, fields in client.xrange(closed_candles_stream("1m"))}
    due = {open_us for tf, open_us in candles if tf == "1m" and open_us > last_seen[0]}
    assert due, "candles must close after the outage began"
    assert due - published <= {max(due)}  # the last may still be forming at the end
    holding = [r.message for r in caplog.records if "Redis unavailable" in r.message]
    assert len(holding) == 1, holding
