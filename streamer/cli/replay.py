"""``triplegain replay``: the replay exchange, a replayed market over Kraken's protocols."""

from __future__ import annotations

import argparse
import asyncio

from streamer.cli.options import check_port_free, non_negative_float, non_negative_int, port, positive_float
from streamer.cli.signals import stop_on_signals
from triplegain_core.config import Settings
from triplegain_core.errors import UserMistake


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose a replayed market (the simulator or a file)."""
    parser.add_argument("--source", default="sim",
                        help="'sim' (built-in simulator) or a trades/candles file (.parquet/.csv)")
    parser.add_argument("--symbol", default="XRP/USDT",
                        help="the pair a replayed file stands for (default XRP/USDT)")
    parser.add_argument("--hours", type=positive_float, default=6.0, help="simulated hours (simulator)")
    parser.add_argument("--seed", type=non_negative_int, default=7, help="simulator seed")
    parser.add_argument("--speed", type=non_negative_float, default=0.0,
                        help="replay speed factor; 0 = as fast as possible")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``replay``."""
    replay = commands.add_parser("replay", help="run the replay exchange")
    add_source_arguments(replay)
    replay.add_argument("--host", default="127.0.0.1")
    replay.add_argument("--port", type=port, default=8765)
    replay.add_argument("--rest-port", type=port, default=None,
                        help="also serve Kraken's public REST on the replayed history here")
    replay.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.replay.exchange import run_replay_exchange
    from streamer.replay.source import replay_source

    if args.rest_port is not None and args.rest_port == args.port != 0:
        raise UserMistake(f"--rest-port {args.rest_port} is also --port: give the REST server its own port")
    check_port_free(args.host, args.port, "--port")
    if args.rest_port is not None:
        check_port_free(args.host, args.rest_port, "--rest-port")
    source = replay_source(args.source, args.symbol, hours=args.hours, seed=args.seed)

    async def run() -> None:
        await run_replay_exchange(source.trades, source.symbols, host=args.host, port=args.port,
                                  speed=args.speed or None, stop=stop_on_signals(),
                                  rest_port=args.rest_port)

    asyncio.run(run())
    return 0
