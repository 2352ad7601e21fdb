"""The dbt models as assets, built (models and their tests) by ``dbt build``.

Each model is an asset of the ``marts`` group and each dbt test an asset check, so a broken
relationship between fills, orders and risk checks fails a check in the UI. The tables the
models read (dbt sources) are the assets that stand for them: the streamer's candles and trades,
the Dagster assets' own tables, and the external tables of
:mod:`triplegain_dagster.defs.trading.tables` for the rest.
"""

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from triplegain_core.storage.dbt_connection import dbt_environment
from triplegain_dagster import groups
from triplegain_dagster.defs.analytics import ANALYTICS_FRESHNESS
from triplegain_dagster.defs.marts.project import DBT_PROJECT
from triplegain_dagster.resources import PostgresResource

TABLE_ASSETS = {
    "candles": "candles_1m",
    "trades": "market_trades",
    "indicator_features": "indicator_features",
    "market_regimes": "market_regime",
    "rebalance_plans": "rebalance_plan",
    "model_scores": "model_performance",
    "llm_calls": "llm_deliberation",
    "llm_answer_cache": "llm_deliberation",
    "llm_decisions": "llm_deliberation",
    **dict.fromkeys(("backtest_runs", "backtest_accounts", "backtest_regimes", "backtest_trades",
                     "backtest_equity"), "backtest_run"),
}
"""The tables an asset of this code location writes (or, for the streamer's two, observes), by
the asset that stands for them in the lineage; every other table is ``triplegain/<table>``."""

STREAMER_TABLES = frozenset({"book_snapshots", "missed_intervals"})
"""The streamer's tables without an asset of their own: external, in the ``market_data`` group."""


class TripleGainDbtTranslator(DagsterDbtTranslator):
    """Models in the ``marts`` group with the hourly analytics' freshness; a source is the asset
    :data:`TABLE_ASSETS` names, else ``triplegain/<table>``, an external table."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str,
                       project: DbtProject | None) -> dg.AssetSpec:
        """dagster-dbt's spec; a model's in the ``marts`` group, refreshed hourly; a source's
        key is the asset that writes the table."""
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source" and props["name"] in TABLE_ASSETS:
            return spec.replace_attributes(key=dg.AssetKey(TABLE_ASSETS[props["name"]]))
        if props["resource_type"] != "model":
            return spec
        return spec.replace_attributes(group_name=groups.MARTS, freshness_policy=ANALYTICS_FRESHNESS)


TRANSLATOR = TripleGainDbtTranslator(settings=DagsterDbtTranslatorSettings(
    # The sources' one-table dbt tests (keys, accepted values) are checks of those tables.
    enable_source_tests_as_checks=True,
    # Several tables written by one asset (the LLM rounds, the backtests) map to that asset.
    enable_duplicate_source_asset_keys=True,
))


@contextmanager
def _connection(database_url: str) -> Iterator[None]:
    """dbt's connection variables set while dbt starts (its process copies the environment)."""
    variables = dbt_environment(database_url)
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dbt_assets(manifest=DBT_PROJECT.manifest_path, project=DBT_PROJECT, dagster_dbt_translator=TRANSLATOR)
def analytics_marts(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                    postgres: PostgresResource) -> Iterator[Any]:
    """``dbt build`` of the selected models and their tests, on the project's database."""
    with _connection(postgres.url()):
        invocation = dbt.cli(["build"], context=context)
    yield from invocation.stream()
