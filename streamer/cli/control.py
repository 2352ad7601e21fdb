"""``triplegain halt``, ``resume`` and ``close``: the kill switch and manual control of the executors.

Each command is recorded in PostgreSQL with who gave it (``TRIPLEGAIN_OPERATOR``, else the OS
user) and why; every running executor applies it within one cycle, and a restarted one comes
back halted when trading was halted.
"""

from __future__ import annotations

import argparse
import getpass
import os

import psycopg

from triplegain_core.config import Settings
from triplegain_core.errors import UserMistake, did_you_mean
from triplegain_core.storage.endpoints import database_url
from triplegain_core.storage.migrate import require_schema

OPERATOR_ENV = "TRIPLEGAIN_OPERATOR"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``halt``, ``resume`` and ``close``."""
    halt = commands.add_parser("halt", help="stop every new entry on every account (exits go on)")
    halt.add_argument("--cancel", action="store_true", help="also cancel the working orders")
    halt.add_argument("--flatten", action="store_true",
                      help="also close every open position of every account at the market")
    halt.add_argument("--reason", default="", help="why (recorded with the command)")
    halt.set_defaults(handler=_halt)
    resume = commands.add_parser("resume", help="lift a halt: new entries are allowed again")
    resume.add_argument("--reason", default="", help="why (recorded with the command)")
    resume.set_defaults(handler=_resume)
    close = commands.add_parser("close", help="close one open position at the market")
    close.add_argument("position_id", metavar="POSITION_ID")
    close.add_argument("--reason", default="", help="why (recorded with the command)")
    close.set_defaults(handler=_close)


def operator() -> str:
    """Who gives a command: ``TRIPLEGAIN_OPERATOR`` when set, else the OS user."""
    return os.environ.get(OPERATOR_ENV, "").strip() or getpass.getuser()


def _halt(args: argparse.Namespace, settings: Settings) -> int:
    from triplegain_core.execution.control import ControlAction
    from triplegain_core.storage.control_store import ControlStore

    with psycopg.connect(_migrated_database(settings), autocommit=True) as conn:
        command = ControlStore(conn).record(ControlAction.HALT, operator(), args.reason,
                                            cancel_orders=args.cancel, flatten=args.flatten)
    print(f"#{command.control_id} {command.describe()}: the executors refuse every new entry from their next"
          " cycle" + (", cancel the working orders" if command.cancel_orders else "")
          + (", close every open position" if command.flatten else ""))
    return 0


def _resume(args: argparse.Namespace, settings: Settings) -> int:
    from triplegain_core.execution.control import ControlAction, halted_by
    from triplegain_core.storage.control_store import ControlStore

    with psycopg.connect(_migrated_database(settings), autocommit=True) as conn:
        store = ControlStore(conn)
        was_halted = halted_by(store.after(0)) is not None
        command = store.record(ControlAction.RESUME, operator(), args.reason)
    print(f"#{command.control_id} {command.describe()}: "
          + ("new entries are allowed again from the executors' next cycle" if was_halted
             else "trading was not halted; nothing changes"))
    return 0


def _close(args: argparse.Namespace, settings: Settings) -> int:
    from triplegain_core.execution.control import ControlAction
    from triplegain_core.storage.control_store import ControlStore

    with psycopg.connect(_migrated_database(settings), autocommit=True) as conn:
        store = ControlStore(conn)
        open_ids = store.open_position_ids()
        if args.position_id not in open_ids:
            row = conn.execute("SELECT status FROM positions WHERE position_id = %s", (args.position_id,)).fetchone()
            if row is not None:
                raise UserMistake(f"close {args.position_id}: the position is already {row[0]}")
            raise UserMistake(f"close {args.position_id}: no open position has this id"
                              f"{did_you_mean(args.position_id, open_ids)} (`triplegain close` takes a position id"
                              " of the positions table)")
        command = store.record(ControlAction.CLOSE, operator(), args.reason, position_id=args.position_id)
    print(f"#{command.control_id} {command.describe()}: its executor closes it at the market in its next cycle")
    return 0


def _migrated_database(settings: Settings) -> str:
    """The database URL, once the server answers and holds the whole schema (else a UserMistake)."""
    db_url = database_url(settings)
    require_schema(db_url)
    return db_url
