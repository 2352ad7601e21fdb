"""``triplegain db``: database administration."""

from __future__ import annotations

import argparse

from triplegain_core.config import Settings
from triplegain_core.storage.embedded import stop_embedded
from triplegain_core.storage.endpoints import database_url
from triplegain_core.storage.migrate import migrate


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``db migrate`` and ``db stop``."""
    db = commands.add_parser("db", help="database administration")
    db_commands = db.add_subparsers(required=True, metavar="ACTION")
    db_commands.add_parser("migrate", help="apply migrations").set_defaults(handler=_db_migrate)
    db_commands.add_parser("stop", help="stop the embedded servers").set_defaults(handler=_db_stop)


def _db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    applied = migrate(database_url(settings))
    print(f"applied {len(applied)} migration(s): {[f'{m.version:04d}_{m.name}' for m in applied]}")
    return 0


def _db_stop(args: argparse.Namespace, settings: Settings) -> int:
    stop_embedded(settings.data_dir)
    print(f"stopped the embedded servers under {settings.data_dir}")
    return 0
