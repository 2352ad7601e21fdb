"""The dbt sources hold the PostgreSQL half of the meeting-place contract: every table and column
the migrations build is documented in ``dbt/models/sources.yml``, and nothing documented is gone."""

from __future__ import annotations

from pathlib import Path

import psycopg
import yaml

SOURCES = Path(__file__).resolve().parents[3] / "dbt" / "models" / "sources.yml"
WRITERS = {"streamer", "executor", "dagster", "backtest", "migrations"}

Columns = dict[str, set[str]]


def documented() -> dict[str, dict[str, str]]:
    """Table -> column -> description, as sources.yml has them."""
    (source,) = yaml.safe_load(SOURCES.read_text())["sources"]
    return {table["name"]: {column["name"]: column.get("description", "") for column in table.get("columns", [])}
            for table in source["tables"]}


def schema_columns(conn: psycopg.Connection) -> Columns:
    """Table -> columns of the migrated schema's base tables."""
    rows = conn.execute(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'").fetchall()
    columns: Columns = {}
    for table, column in rows:
        columns.setdefault(table, set()).add(column)
    return columns


def contract_breaches(schema: Columns, docs: dict[str, dict[str, str]]) -> list[str]:
    """Every way ``docs`` fails ``schema``, one line each, naming the table or column."""
    breaches = [f"{table}: table not documented" for table in sorted(schema.keys() - docs.keys())]
    breaches += [f"{table}: documented table is not in the schema" for table in sorted(docs.keys() - schema.keys())]
    for table in sorted(schema.keys() & docs.keys()):
        breaches += [f"{table}.{column}: column not documented"
                     for column in sorted(schema[table] - docs[table].keys())]
        breaches += [f"{table}.{column}: documented column is not in the schema"
                     for column in sorted(docs[table].keys() - schema[table])]
        breaches += [f"{table}.{column}: no description" for column in sorted(schema[table] & docs[table].keys())
                     if not docs[table][column].strip()]
    return breaches


def test_every_table_and_column_of_the_schema_is_documented(db: psycopg.Connection) -> None:
    """The migrated schema and sources.yml name the same tables and columns, each described."""
    assert contract_breaches(schema_columns(db), documented()) == []


def test_every_table_says_what_a_row_is_and_who_writes_it() -> None:
    """A description and a writer (meta.writer) on every table."""
    (source,) = yaml.safe_load(SOURCES.read_text())["sources"]
    for table in source["tables"]:
        assert table.get("description", "").strip(), table["name"]
        assert table.get("config", {}).get("meta", {}).get("writer") in WRITERS, table["name"]


def test_a_column_added_without_its_documentation_is_named(db: psycopg.Connection) -> None:
    """The comparison fails on what a migration could do: a new column, a dropped table, a
    description left empty."""
    db.execute("ALTER TABLE fills ADD COLUMN venue text")
    docs = documented()
    del docs["guard_events"]
    docs["orders"]["purpose"] = " "
    assert contract_breaches(schema_columns(db), docs) == [
        "guard_events: table not documented",
        "fills.venue: column not documented",
        "orders.purpose: no description",
    ]
