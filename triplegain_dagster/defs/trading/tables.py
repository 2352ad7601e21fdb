"""The executor's tables (and the streamer's without an asset) as external assets, described by
``dbt/models/sources.yml``.

Dagster does not write these tables (the executor does), so they are ``AssetSpec``\\ s: the
lineage shows them upstream of the marts that read them, with the columns the dbt sources
document, and their dbt tests run as their checks (see ``defs/marts``).
"""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

from triplegain_dagster import groups
from triplegain_dagster.defs.marts.dbt_marts import STREAMER_TABLES, TABLE_ASSETS, TRANSLATOR
from triplegain_dagster.defs.marts.project import DBT_PROJECT


def _column_schema(source: dict[str, Any]) -> dg.TableSchema:
    return dg.TableSchema(columns=[
        dg.TableColumn(name, description=column.get("description") or None)
        for name, column in source["columns"].items()
    ])


def external_table_specs(manifest: dict[str, Any]) -> list[dg.AssetSpec]:
    """One spec per dbt source no asset of this code location stands for: the executor's tables
    (group ``trading``) and the streamer's other tables (``market_data``)."""
    specs = []
    for unique_id, source in sorted(manifest["sources"].items()):
        if source["name"] in TABLE_ASSETS or source["name"] == "schema_migrations":
            continue
        key = TRANSLATOR.get_asset_spec(manifest, unique_id, DBT_PROJECT).key
        specs.append(dg.AssetSpec(
            key, group_name=groups.MARKET_DATA if source["name"] in STREAMER_TABLES else groups.TRADING,
            description=source.get("description") or None, kinds={"postgres"},
            metadata={"dagster/column_schema": _column_schema(source),
                      "dagster/table_name": f"{source['schema']}.{source['name']}"},
        ))
    return specs


@dg.definitions
def executor_tables() -> dg.Definitions:
    """The external tables, from the dbt project's manifest."""
    manifest = json.loads(DBT_PROJECT.manifest_path.read_text())
    return dg.Definitions(assets=external_table_specs(manifest))
