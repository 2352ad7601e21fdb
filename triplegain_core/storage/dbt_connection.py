"""The dbt project's connection: the project's own database, handed to dbt as variables.

``dbt/profiles.yml`` reads its host, port, user, database and password from the variables
:func:`dbt_environment` returns, so dbt works on whatever database every other TripleGain
process uses (``TRIPLEGAIN_DATABASE_URL``, else the embedded server, whose unix socket folder is
the host). The password travels as ``DBT_ENV_SECRET_TRIPLEGAIN_PASSWORD``: dbt scrubs variables
with that prefix from its logs and artifacts.
"""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

DBT_PASSWORD_ENV = "DBT_ENV_SECRET_TRIPLEGAIN_PASSWORD"
DBT_HOST_ENV = "TRIPLEGAIN_DBT_HOST"
DBT_PORT_ENV = "TRIPLEGAIN_DBT_PORT"
DBT_USER_ENV = "TRIPLEGAIN_DBT_USER"
DBT_DBNAME_ENV = "TRIPLEGAIN_DBT_DBNAME"

MARTS_SCHEMA = "analytics"
"""Where dbt builds the marts (its staging views go to ``analytics_staging``)."""


def dbt_environment(database_url: str) -> dict[str, str]:
    """The variables ``dbt/profiles.yml`` reads, for the database at ``database_url`` (a URL or a
    libpq connection string)."""
    params = {key: str(value) for key, value in conninfo_to_dict(database_url).items()}
    return {
        DBT_HOST_ENV: params.get("host", "localhost"),
        DBT_PORT_ENV: params.get("port", "5432"),
        DBT_USER_ENV: params.get("user", "postgres"),
        DBT_DBNAME_ENV: params.get("dbname", "postgres"),
        DBT_PASSWORD_ENV: params.get("password", ""),
    }
