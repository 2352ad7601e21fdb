"""Versioned schema migrations, applied in order, each exactly once.

Migrations are the ``NNNN_name.sql`` files beside this module. Applied versions are recorded in
``schema_migrations`` with the sha256 of the text applied; an advisory lock lets several processes
start at once safely. Steps that need TimescaleDB sit in ``DO`` blocks that check for the
extension, so the same migrations run on plain PostgreSQL, where those steps are skipped.

Versions are gapped (0003, 0010, 0012, ...), so order is enforced, not assumed: a pending version
lower than the highest applied one is refused (it would run in a different order on old and new
databases), and an applied migration whose text changed since is refused (the databases it ran
on no longer match the file). Fix either by adding a new migration with a higher version.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from dataclasses import dataclass, field
from importlib import resources

import psycopg

from triplegain_core.errors import UserMistake
from triplegain_core.storage.endpoints import masked_url

log = logging.getLogger(__name__)

_LOCK_KEY = 0x7472_6970  # arbitrary, constant: one migration run at a time per database


class MigrationError(RuntimeError):
    """The migrations on disk and those recorded in the database disagree; nothing was applied."""


class SchemaNotMigrated(UserMistake):
    """A command needs the schema, and the database has not (all) of it: migrate it first."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One ``NNNN_name.sql`` file: its version, name and text."""

    version: int
    name: str
    sql: str = field(repr=False)

    @property
    def filename(self) -> str:
        """The file this migration was read from."""
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        """sha256 of the file's text, recorded when applied and compared on every run."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Applied:
    version: int
    checksum: str | None


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
        raise MigrationError(f"migration versions used twice: {', '.join(clashes)}")
    return found


def _ensure_tracking_table(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now(), checksum text)"
    )
    # Databases created before checksums existed have the table without the column; a nullable
    # column is added in place (no rewrite, no data change), and NULL means "not recorded yet".
    conn.execute("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text")


def _pending(available: list[Migration], applied: dict[int, _Applied]) -> list[Migration]:
    """The migrations to apply, after checking the applied ones still match their files."""
    for migration in available:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded.checksum is not None and recorded.checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.filename} was changed after it was applied (recorded sha256"
                f" {recorded.checksum}, file {migration.checksum}); restore its text and put the"
                " change in a new migration")
    pending = [m for m in available if m.version not in applied]
    if pending and applied:
        highest = max(applied)
        early = [m for m in pending if m.version < highest]
        if early:
            raise MigrationError(
                f"migration {early[0].filename} (version {early[0].version:04d}) is pending but"
                f" version {highest:04d} is already applied: applying it now would run the"
                " migrations in a different order here than on a new database; give it a version"
                f" above {highest:04d}")
    return pending


def _adopt_legacy_checksums(conn: psycopg.Connection, available: list[Migration],
                            applied: dict[int, _Applied]) -> None:
    # Migrations applied before checksums were kept have none: the text on disk now is taken as
    # the text applied (recorded, not refused), so an existing database adopts checksums on its
    # first run and any later edit of those files is caught.
    for migration in available:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded.checksum is None:
            conn.execute("UPDATE schema_migrations SET checksum = %s WHERE version = %s",
                         (migration.checksum, migration.version))
            log.info("recorded the checksum of %s, applied before checksums were kept", migration.filename)


def migrate(database_url: str) -> list[Migration]:
    """Apply every migration not yet applied, in version order; return those applied now.

    Raises ``MigrationError`` (applying nothing) when a pending version is lower than the
    highest applied one, or when an applied migration's text no longer matches its checksum.
    """
    applied_now = []
    available = available_migrations()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            _ensure_tracking_table(conn)
            applied = {row[0]: _Applied(row[0], row[1])
                       for row in conn.execute("SELECT version, checksum FROM schema_migrations")}
            pending = _pending(available, applied)
            _adopt_legacy_checksums(conn, available, applied)
            for migration in pending:
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                log.info("applied migration %04d_%s", migration.version, migration.name)
                applied_now.append(migration)
            if applied_now:
                timescale = conn.execute(
                    "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
                log.info("schema at %04d on %s", available[-1].version,
                         "TimescaleDB (hypertables, compression, retention)" if timescale
                         else "plain PostgreSQL (TimescaleDB steps skipped)")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def require_schema(database_url: str) -> None:
    """Raise :class:`SchemaNotMigrated` unless every packaged migration is applied; writes nothing."""
    available = available_migrations()
    with psycopg.connect(database_url, autocommit=True) as conn:
        tracked = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        applied = ({row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
                   if tracked and tracked[0] else set())
    pending = [m for m in available if m.version not in applied]
    if pending:
        raise SchemaNotMigrated(
            f"the database at {masked_url(database_url)} is not migrated ({len(pending)} of"
            f" {len(available)} migrations pending, from {pending[0].filename}): run `triplegain db"
            " migrate` first")


def timescaledb_enabled(database_url: str) -> bool:
    """Whether the timescaledb extension is installed in this database."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None
