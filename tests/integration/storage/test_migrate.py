"""Migrations applied in version order, each checked against the text it was applied from."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from triplegain_core.storage import migrate as migrate_module
from triplegain_core.storage.embedded import drop_database, ensure_database
from triplegain_core.storage.migrate import MigrationError, available_migrations, migrate


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with nothing migrated, dropped after the test."""
    name = f"tg_test_{uuid.uuid4().hex[:12]}"
    ensure_database(pg_admin_url, name)
    params = conninfo_to_dict(pg_admin_url)
    params["dbname"] = name
    yield make_conninfo(**params)
    drop_database(pg_admin_url, name)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A migrations folder of the test's own, read instead of the packaged one."""
    (tmp_path / "migrations").mkdir()
    monkeypatch.setattr(migrate_module.resources, "files", lambda package: tmp_path)
    return tmp_path / "migrations"


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def _recorded(url: str) -> dict[int, str | None]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())


def test_a_pending_version_below_the_highest_applied_is_refused(empty_database_url: str, folder: Path) -> None:
    (folder / "0001_first.sql").write_text("CREATE TABLE first (id int)")
    (folder / "0010_tenth.sql").write_text("CREATE TABLE tenth (id int)")
    assert [m.version for m in migrate(empty_database_url)] == [1, 10]

    (folder / "0004_late.sql").write_text("CREATE TABLE late (id int)")
    (folder / "0011_next.sql").write_text("CREATE TABLE next (id int)")
    with pytest.raises(MigrationError, match=r"0004_late\.sql.*version 0004.*version 0010"):
        migrate(empty_database_url)
    assert "late" not in _tables(empty_database_url)
    assert "next" not in _tables(empty_database_url)  # refused as a whole: nothing applied
    assert set(_recorded(empty_database_url)) == {1, 10}


def test_an_applied_migration_whose_text_changed_is_refused(empty_database_url: str, folder: Path) -> None:
    (folder / "0001_first.sql").write_text("CREATE TABLE first (id int)")
    (folder / "0002_second.sql").write_text("CREATE TABLE second (id int)")
    migrate(empty_database_url)

    (folder / "0002_second.sql").write_text("CREATE TABLE second (id bigint)")
    (folder / "0003_third.sql").write_text("CREATE TABLE third (id int)")
    with pytest.raises(MigrationError, match=r"0002_second\.sql was changed after it was applied"):
        migrate(empty_database_url)
    assert "third" not in _tables(empty_database_url)


def test_a_database_migrated_before_checksums_adopts_them(empty_database_url: str, folder: Path) -> None:
    (folder / "0001_first.sql").write_text("CREATE TABLE first (id int)")
    (folder / "0003_third.sql").write_text("CREATE TABLE third (id int)")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:  # the tracking table as it was
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                     " applied_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("CREATE TABLE first (id int)")
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'first')")

    assert [m.version for m in migrate(empty_database_url)] == [3]
    checksums = {m.version: m.checksum for m in available_migrations()}
    assert _recorded(empty_database_url) == checksums

    (folder / "0001_first.sql").write_text("CREATE TABLE first (id bigint)")
    with pytest.raises(MigrationError, match=r"0001_first\.sql was changed"):
        migrate(empty_database_url)


def test_the_packaged_migrations_adopt_checksums_on_an_existing_database(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE schema_migrations DROP COLUMN checksum")
    assert migrate(database_url) == []
    assert _recorded(database_url) == {m.version: m.checksum for m in available_migrations()}


def test_migrating_again_applies_nothing_and_keeps_the_checksums(empty_database_url: str) -> None:
    applied = migrate(empty_database_url)
    assert [m.version for m in applied] == [m.version for m in available_migrations()]
    recorded = _recorded(empty_database_url)
    assert migrate(empty_database_url) == []
    assert migrate(empty_database_url) == []
    assert _recorded(empty_database_url) == recorded
    assert None not in recorded.values()
