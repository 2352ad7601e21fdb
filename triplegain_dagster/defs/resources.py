"""The resources every concern's assets, checks and sensors ask for, bound by key."""

import dagster as dg
from dagster_dbt import DbtCliResource

from triplegain_dagster.defs.marts.project import DBT_PROJECT, dbt_executable
from triplegain_dagster.resources import (
    DataQualityResource,
    ExchangeResource,
    LLMResource,
    PostgresResource,
    RebalancingResource,
    RedisResource,
)


@dg.definitions
def resources() -> dg.Definitions:
    """The resource bindings of the code location."""
    # Unconfigured: the database and Redis resolve from TRIPLEGAIN_* / the config file / the
    # embedded servers at run time, so no URL (and no password in one) is ever part of the
    # config the UI shows; the exchange is Kraken's own REST API, keys from the environment.
    return dg.Definitions(resources={
        "postgres": PostgresResource(),
        "redis": RedisResource(),
        "exchange": ExchangeResource(),
        "quality": DataQualityResource(),
        "rebalancing": RebalancingResource(),
        "llm": LLMResource(),
        # dbt's connection comes from `postgres` when the marts build (defs/marts/dbt_marts.py).
        "dbt": DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=dbt_executable()),
    })
