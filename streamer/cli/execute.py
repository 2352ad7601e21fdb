"""``triplegain execute``: the 100 ms trading loop on the paper accounts."""

from __future__ import annotations

import argparse
import asyncio
import logging
from contextlib import suppress
from typing import TYPE_CHECKING

import psycopg
import redis

from streamer.cli.signals import stop_on_signals
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import HotStateReader
from triplegain_core.errors import UserMistake
from triplegain_core.storage.endpoints import database_url, redis_url
from triplegain_core.storage.executor_lease import LeaseHeld
from triplegain_core.storage.migrate import migrate
from triplegain_core.storage.trading_store import TradingStore

if TYPE_CHECKING:
    from triplegain_core.decisions.gate_queue import GateQueue

log = logging.getLogger("triplegain")

# The pauses between attempts to reach PostgreSQL again: from the first to the longest, doubling.
DATABASE_RETRY_FIRST_S = 0.5
DATABASE_RETRY_MAX_S = 10.0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``execute``."""
    execute = commands.add_parser("execute", help="run the trading loop (paper)")
    execute.add_argument("--from-start", action="store_true",
                         help="process the closed-candle stream from its beginning (unless a checkpoint of"
                              " the accounts exists: a restart continues after it)")
    execute.set_defaults(handler=_execute)


def _execute(args: argparse.Namespace, settings: Settings) -> int:
    from streamer.executor.decision_feed import DecisionFeed
    from streamer.executor.lease import keep_lease
    from streamer.executor.loop import TradingLoop
    from triplegain_core.contracts.decision_streams import DecisionConsumer, DecisionStream, StrongSignalStream
    from triplegain_core.decisions.handover import republish_approved
    from triplegain_core.decisions.intake import DecisionIntake
    from triplegain_core.risk.guards import ReplayClock, WallClock
    from triplegain_core.storage.checkpoints import CheckpointStore
    from triplegain_core.storage.control_store import ControlStore, ControlWatch
    from triplegain_core.storage.decision_ledger import DecisionLedger
    from triplegain_core.storage.executor_lease import ExecutorLease
    from triplegain_core.storage.gate_store import GateStore

    if settings.mode != "paper":
        raise UserMistake("TRIPLEGAIN_MODE=live: live execution is not part of this version, the executor"
                          " trades on paper only: set TRIPLEGAIN_MODE=paper")
    # Both servers are checked before the migrations write anything.
    db_url, hot_state_url = database_url(settings), redis_url(settings)
    migrate(db_url)

    def sweep() -> int:
        # Its own short connection, on the decision feed's thread: a lost one costs one sweep.
        with psycopg.connect(db_url, autocommit=True) as sweep_conn:
            return len(republish_approved(DecisionLedger(sweep_conn), DecisionStream(client)))

    client = redis.Redis.from_url(hot_state_url)
    # Held until the process ends: a second executor of this account set says who runs it, and exits.
    lease = ExecutorLease(db_url, settings.account)
    lease.acquire()

    async def run() -> LeaseHeld | None:
        stop = stop_on_signals()
        keeper = asyncio.create_task(keep_lease(lease, stop))
        pause = DATABASE_RETRY_FIRST_S
        # Writes that failed since the last session: the next one's failure breaker counts them.
        failed = 0
        while not stop.is_set():
            try:
                await session(stop, failed)
                break
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                if stop.is_set():
                    break
                failed += 1
                # Whatever the cycle in flight did was rolled back with its transaction: the
                # accounts are rebuilt from the last recorded cycle, as after a restart.
                log.error("PostgreSQL is out of reach (%s): no order until it answers; the accounts will"
                          " then continue from the last recorded cycle", str(error).strip().splitlines()[0])
            while not stop.is_set() and not _answers(db_url):
                failed += 1
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pause)
                pause = min(pause * 2, DATABASE_RETRY_MAX_S)
            if not stop.is_set():
                log.warning("PostgreSQL answers again: restoring the accounts and trading on")
                pause = DATABASE_RETRY_FIRST_S
        stop.set()
        return await keeper

    async def session(stop: asyncio.Event, failed_writes: int) -> None:
        """One connected run of the loop, from the accounts' checkpoint until ``stop``;
        ``failed_writes`` failed since the last (counted by the restored failure breaker)."""
        with psycopg.connect(db_url, autocommit=True) as conn, ControlWatch(db_url) as watch, \
                DecisionFeed(DecisionConsumer(client, settings.account), sweep) as feed:
            # Decisions come through the stream's consumer group, acknowledged once recorded;
            # only stored, approved and untraded ones trade, so none is lost or repeated.
            intake = DecisionIntake(feed, DecisionLedger(conn), min_confidence=settings.deliberation.min_confidence)
            gate = _gate_queue(settings, db_url)
            trail = TradingStore(conn)
            loop = TradingLoop(
                settings,
                HotStateReader(client),
                trail,
                start_stream_id="0" if args.from_start else "$",
                decisions=intake,
                strong_signals=StrongSignalStream(client),
                gate=gate,
                gate_store=GateStore(conn),
                # Live, the market's age is judged on the wall clock; trading a replayed market
                # (guards.clock = "market"), on the replay's own clock.
                clock=WallClock() if settings.guards.clock == "wall" else ReplayClock(),
                checkpoints=CheckpointStore(conn, settings.account, trail.transactions),
                controls=ControlStore(conn),
                control_watch=watch,
            )
            # Every account as the last committed cycle left it, or a fresh start without one.
            if loop.restore():
                log.info("restored from the checkpoint: %d accounts", len(loop.kernel.accounts))
            if failed_writes:
                loop.count_failed_writes(failed_writes, "PostgreSQL out of reach: cycle not recorded")
            for account in loop.kernel.accounts:
                log.info("account %s trades %s", account.name, account.strategy or "the TechnicalAgent")
            for report in loop.kernel.strategy_reports:
                if not report.loaded:
                    log.warning("strategy %s not run: %s", report.name or report.source, report.reason)
            try:
                stats = await loop.run(stop)
            finally:
                if gate is not None:
                    gate.close()
            print(stats)
            for account in loop.kernel.accounts:
                print(account.name, account.stats)
            print("decisions", intake.stats)

    try:
        lost = asyncio.run(run())
    finally:
        lease.release()
    if lost is not None:
        raise lost
    return 0


def _answers(db_url: str) -> bool:
    """Whether PostgreSQL takes a connection now."""
    try:
        with psycopg.connect(db_url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _gate_queue(settings: Settings, db_url: str) -> GateQueue | None:
    """The LLM confirmation gate of the gated strategies, off the loop (None: nothing gated)."""
    model = settings.gate_model()
    if model is None:
        return None
    # Imported only here: the executor loads no LLM SDK unless a strategy is gated.
    from triplegain_core.decisions.gate_queue import GateQueue
    from triplegain_core.llm.client import LLMClient
    from triplegain_core.llm.gate import LLMSignalGate
    from triplegain_core.storage.llm_store import DatabaseRecorder

    gating = settings.strategies
    log.info("strategies %s are gated by %s (%s on failure)", ", ".join(gating.gated), model,
             gating.gate_policy.value)
    gate = LLMSignalGate(lambda: LLMClient(settings.llm, recorder=DatabaseRecorder(db_url)), model,
                         min_confidence=settings.deliberation.min_confidence, deadline_s=gating.gate_wait_s)
    return GateQueue(gate, gating.gate_policy, max_wait_s=gating.gate_wait_s + 5.0)
