"""The dbt sources hold the PostgreSQL half of the meeting-place contract: every table and column
the migrations build is documented in ``dbt/models/sources.yml``, and nothing documented is gone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import yaml

SOURCES = Path(__file__).resolve().parents[3] / "dbt" / "models" / "sources.yml"
WRITERS = {"streamer", "executor", "dagster", "backtest", "migrations"}

Schema = dict[str, set[str]]
"""Table -> its columns."""
Docs = dict[str, dict[str, str]]
"""Table -> column -> its description."""


def source_tables() -> list[dict[str, Any]]:
    """The tables of sources.yml's one source, as written."""
    (source,) = yaml.safe_load(SOURCES.read_text())["sources"]
    tables: list[dict[str, Any]] = source["tables"]
    return tables


def documented() -> Docs:
    """Every documented column's description ("" when it has none), by table."""
    return {table["name"]: {column["name"]: column.get("description") or "" for column in table.get("columns") or []}
            for table in source_tables()}


def schema_columns(conn: psycopg.Connection) -> Schema:
    """The columns of the migrated schema's base tables (views and extensions' tables left out)."""
    rows = conn.execute(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'").fetchall()
    schema: Schema = {}
    for table, column in rows:
        schema.setdefault(table, set()).add(column)
    return schema


def undocumented(schema: Schema, docs: Docs) -> list[str]:
    """What the schema has that ``docs`` does not describe, one line per table or column."""
    missing = [f"{table}: table not documented (columns {', '.join(sorted(schema[table]))})"
               for table in sorted(schema.keys() - docs.keys())]
    for table in sorted(schema.keys() & docs.keys()):
        missing += [f"{table}.{column}: column not documented" for column in sorted(schema[table] - docs[table].keys())]
        missing += [f"{table}.{column}: no description" for column in sorted(schema[table] & docs[table].keys())
                    if not docs[table][column].strip()]
    return missing


def stale(schema: Schema, docs: Docs) -> list[str]:
    """What ``docs`` documents that the schema does not have, one line per table or column."""
    gone = [f"{table}: documented table is not in the schema" for table in sorted(docs.keys() - schema.keys())]
    for table in sorted(docs.keys() & schema.keys()):
        gone += [f"{table}.{column}: documented column is not in the schema"
                 for column in sorted(docs[table].keys() - schema[table])]
    return gone


def test_every_table_and_column_of_the_schema_is_documented(db: psycopg.Connection) -> None:
    """Each table and column of the migrated schema has a description in sources.yml."""
    missing = undocumented(schema_columns(db), documented())
    assert not missing, f"document these in {SOURCES}:\n" + "\n".join(missing)


def test_nothing_documented_is_gone_from_the_schema(db: psycopg.Connection) -> None:
    """Each table and column sources.yml documents is in the migrated schema."""
    gone = stale(schema_columns(db), documented())
    assert not gone, f"remove (or rename) these in {SOURCES}:\n" + "\n".join(gone)


def test_every_table_says_what_a_row_is_and_who_writes_it() -> None:
    """A description and a writer (config.meta.writer, one of WRITERS) on every table."""
    lacking = [table["name"] for table in source_tables()
               if not (table.get("description") or "").strip()
               or (table.get("config") or {}).get("meta", {}).get("writer") not in WRITERS]
    assert not lacking, f"tables without a description or a writer among {sorted(WRITERS)}: {lacking}"


def test_the_comparison_names_each_difference(db: psycopg.Connection) -> None:
    """Docs that drift from the real schema, one way and the other, are reported line by line
    (the checks above would pass vacuously if the comparison could not fail)."""
    schema = schema_columns(db)
    docs = documented()  # read afresh: a copy of its own to change
    del docs["fills"]["fee_asset"]
    docs["orders"]["purpose"] = " "
    del docs["executor_leases"]
    docs["fills"]["venue"] = "A column a migration dropped."
    docs["trading_decisions"] = {"decision_id": "A table a migration dropped."}

    assert undocumented(schema, docs) == [
        "executor_leases: table not documented (columns host, name, pid, since)",
        "fills.fee_asset: column not documented",
        "orders.purpose: no description",
    ]
    assert stale(schema, docs) == [
        "trading_decisions: documented table is not in the schema",
        "fills.venue: documented column is not in the schema",
    ]
