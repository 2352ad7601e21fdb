"""Dagster's instance on PostgreSQL: its own database beside the trading one, on the same server.

Dagster keeps its runs, event log, schedules and sensor cursors in the database
:func:`dagster_database_url` names (``<trading database>_dagster``, created when missing), so
they survive a restart of ``make ui`` and are shared by every process on the instance. The
instance file (``dagster.yaml`` at the top of the checkout, copied into ``$DAGSTER_HOME`` by
:func:`prepare_dagster_home`) reads the URL from ``TRIPLEGAIN_DAGSTER_DATABASE_URL``.

The URL's scheme is ``postgresql+psycopg2``: SQLAlchemy 2.1 takes a bare ``postgresql://`` to
mean psycopg 3, on which dagster-postgres's ``NOTIFY run_events`` fails; ``+psycopg2`` keeps
dagster-postgres on the driver it is written for (``psycopg2-binary``, installed with it).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import quote, urlencode

from psycopg.conninfo import conninfo_to_dict

from triplegain_core.storage.embedded import ensure_database

DAGSTER_DATABASE_URL_ENV = "TRIPLEGAIN_DAGSTER_DATABASE_URL"
DAGSTER_DATABASE_SUFFIX = "_dagster"
DAGSTER_URL_SCHEME = "postgresql+psycopg2"


def dagster_database_url(database_url: str) -> str:
    """The URL of Dagster's database beside the trading database at ``database_url`` (a URL or a
    libpq connection string; created when missing, with the same credentials), in the scheme
    dagster-postgres needs."""
    params = {key: str(value) for key, value in conninfo_to_dict(database_url).items()}
    database = f"{params.pop('dbname', None) or 'postgres'}{DAGSTER_DATABASE_SUFFIX}"
    ensure_database(database_url, database)
    user, password = quote(params.pop("user", "postgres"), safe=""), params.pop("password", "")
    host = params.get("host", "")
    if host and not host.startswith("/"):
        # A TCP host goes in the address; a unix socket folder stays a parameter (with its port).
        params.pop("host")
        host = f"{host}:{params.pop('port')}" if "port" in params else host
    else:
        host = ""
    userinfo = f"{user}:{quote(password, safe='')}" if password else user
    query = f"?{urlencode(params)}" if params else ""
    return f"{DAGSTER_URL_SCHEME}://{userinfo}@{host}/{database}{query}"


def prepare_dagster_home(home: Path, instance_file: Path, database_url: str) -> dict[str, str]:
    """Put ``instance_file`` into ``home`` (kept when one is there: a user's edits stay) and
    return the environment the Dagster processes need: ``DAGSTER_HOME`` and Dagster's database
    URL beside ``database_url``."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(instance_file, home / "dagster.yaml")
    return {"DAGSTER_HOME": str(home.resolve()), DAGSTER_DATABASE_URL_ENV: dagster_database_url(database_url)}
