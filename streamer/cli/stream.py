"""``triplegain stream``: the market-data streamer (exchange WebSocket -> PostgreSQL and Redis)."""

from __future__ import annotations

import argparse
import asyncio
import logging

import psycopg
import redis

from streamer.cli.options import http_url, websocket_url
from streamer.cli.signals import stop_on_signals
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import HotStatePublisher
from triplegain_core.storage.endpoints import database_url, redis_url
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.migrate import migrate

log = logging.getLogger("triplegain")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``stream``."""
    stream = commands.add_parser("stream", help="run the market-data streamer")
    stream.add_argument("--ws-url", type=websocket_url, default=None, help="exchange WebSocket URL (default: config)")
    stream.add_argument("--rest-url", type=http_url, default=None,
                        help="exchange REST host for gap repair (default: config, else Kraken)")
    stream.set_defaults(handler=_stream)


def _stream(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.ingest.connection import TradeStreamer
    from streamer.ingest.rest_repair import GapRepairer, GapRepairs, RestBackfill
    from streamer.ingest.resume import resume_state
    from triplegain_core.adapters.kraken.rest import ExchangeRestConfig, RestMarketData
    from triplegain_core.storage.missed_interval_store import MissedIntervalStore

    updates = {key: value for key, value in (("ws_url", args.ws_url),
                                             ("rest_url", args.rest_url)) if value}
    settings = settings.model_copy(update=updates)
    # Both servers are checked before the migrations write anything.
    db_url, hot_state_url = database_url(settings), redis_url(settings)
    migrate(db_url)

    async def run() -> None:
        stop = stop_on_signals()
        with psycopg.connect(db_url, autocommit=True) as conn, \
                psycopg.connect(db_url, autocommit=True) as repair_conn:
            store = MarketStore(conn)
            # Go on from what is stored: a restart (a crash included) leaves no hole behind.
            resume = resume_state(store, settings.symbols)
            for symbol, mark in sorted(resume.marks.items()):
                log.info("resuming %s after stored trade %d (%d stored trades of its open "
                         "candles)", symbol, mark.trade_id,
                         sum(t.symbol == symbol for t in resume.warm_up))
            rest_config = ExchangeRestConfig(base_url=settings.rest_url,
                                             rate_limit_ms=settings.rest_rate_limit_ms)
            async with RestMarketData(rest_config) as rest:
                # What the in-stream backfill cannot fill yet is retried until it is filled.
                repairs = GapRepairs(
                    GapRepairer(rest, repair_conn), MissedIntervalStore(repair_conn),
                    closed_before=lambda symbol, timeframe: streamer.closed_before(symbol,
                                                                                   timeframe),
                    write_candles=lambda candles: streamer.write_candles(candles))
                streamer = TradeStreamer(
                    settings, store, HotStatePublisher(redis.Redis.from_url(hot_state_url)),
                    resume_from=resume.marks, warm_up=resume.warm_up,
                    backfill=RestBackfill(rest), on_missed_interval=repairs.submit,
                    reconnect_store=lambda: MarketStore(psycopg.connect(db_url, autocommit=True)))
                repairing_done = asyncio.Event()
                repairing = asyncio.create_task(repairs.run(repairing_done))
                try:
                    print(await streamer.run_until(stop, drain_at_end=False))
                finally:
                    repairing_done.set()
                    await repairing
                await repairs.finish()
                if repairs.open:
                    log.error("%d holes not filled yet: the next run retries them",
                              repairs.open)

    asyncio.run(run())
    return 0
