"""Versioned schema migrations, applied in order, each exactly once.

Migrations are the ``NNNN_name.sql`` files beside this module. Applied versions are recorded in
``schema_migrations``; an advisory lock lets several processes start at once safely. Steps that
need TimescaleDB sit in ``DO`` blocks that check for the extension, so the same migrations run
on plain PostgreSQL, where those steps are skipped.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

_LOCK_KEY = 0x7472_6970  # arbitrary, constant: one migration run at a time per database


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str = field(repr=False)


def available_migrations() -> list[Migration]:
    """The packaged migrations, sorted by version."""
    folder = resources.files("triplegain_core.storage") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, name = entry.name.removesuffix(".sql").partition("_")
            found.append(Migration(int(version), name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    clashes = [f"{a.version:04d}_{a.name} / {b.name}"
               for a, b in itertools.pairwise(found) if a.version == b.version]
    if clashes:  # two branches picked the same number: refuse rather than apply one of them
        raise RuntimeError(f"migration versions used twice: {', '.join(clashes)}")
    return found


def migrate(database_url: str) -> list[Migration]:
    """Apply every migration not yet applied; return those applied now."""
    applied_now = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in available_migrations():
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                log.info("applied migration %04d_%s", migration.version, migration.name)
                applied_now.append(migration)
            if applied_now:
                timescale = conn.execute(
                    "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
                log.info("schema at %04d on %s", available_migrations()[-1].version,
                         "TimescaleDB (hypertables, compression, retention)" if timescale
                         else "plain PostgreSQL (TimescaleDB steps skipped)")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def timescaledb_enabled(database_url: str) -> bool:
    """Whether the timescaledb extension is installed in this database."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None
