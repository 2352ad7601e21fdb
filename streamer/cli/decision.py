"""``triplegain decision``: a person approves or rejects the deliberated decisions."""

from __future__ import annotations

import argparse

import psycopg
import redis

from triplegain_core.config import Settings
from triplegain_core.storage.endpoints import database_url, redis_url
from triplegain_core.storage.migrate import require_schema


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``decision list``, ``decision approve ID`` and ``decision reject ID``."""
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


def _decision_list(args: argparse.Namespace, settings: Settings) -> int:
    from triplegain_core.decisions.approval import pending_decisions
    from triplegain_core.model.market import us_to_datetime
    from triplegain_core.storage.decision_ledger import DecisionLedger

    db_url = _migrated_database(settings)
    with psycopg.connect(db_url, autocommit=True) as conn:
        pending = pending_decisions(DecisionLedger(conn))
    if not pending:
        print("no decision is waiting for approval")
    for item in pending:
        d = item.decision
        print(f"{item.decision_id}  {item.account}  {d.action.value} {d.symbol} confidence {d.confidence:.2f}"
              f" size {d.position_size_pct:g}%  expires {us_to_datetime(item.expires_us):%Y-%m-%d %H:%M} UTC")
        print(f"    {d.reasoning}")
    return 0


def _decision_approve(args: argparse.Namespace, settings: Settings) -> int:
    from triplegain_core.contracts.decision_streams import DecisionStream
    from triplegain_core.decisions.approval import ApprovalOutcome, approve
    from triplegain_core.storage.decision_ledger import DecisionLedger

    db_url = _migrated_database(settings)
    stream = DecisionStream(redis.Redis.from_url(redis_url(settings)))
    with psycopg.connect(db_url, autocommit=True) as conn:
        result = approve(DecisionLedger(conn), stream, args.decision_id, args.by)
    print(result.message)
    return 0 if result.outcome is ApprovalOutcome.APPROVED else 1


def _decision_reject(args: argparse.Namespace, settings: Settings) -> int:
    from triplegain_core.decisions.approval import reject
    from triplegain_core.storage.decision_ledger import DecisionLedger

    db_url = _migrated_database(settings)
    with psycopg.connect(db_url, autocommit=True) as conn:
        print(reject(DecisionLedger(conn), args.decision_id, args.by, args.reason).message)
    return 0


def _migrated_database(settings: Settings) -> str:
    """The database URL, once the server answers and holds the whole schema (else a UserMistake)."""
    db_url = database_url(settings)
    require_schema(db_url)
    return db_url
