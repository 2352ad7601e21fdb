"""Dagster resources for the two meeting places of TripleGain: PostgreSQL and Redis.

With no configuration both resolve like every other TripleGain process: ``TRIPLEGAIN_*``
environment variables and the config file through ``load_settings``, else the embedded servers
under the data directory. Connection URLs may hold passwords: leave the fields unset (the
environment is read at run time) or pass ``dagster.EnvVar("TRIPLEGAIN_DATABASE_URL")``, whose
value the UI never shows, rather than a literal URL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis
from dagster import ConfigurableResource
from pydantic import Field

from triplegain_core.config import Settings, load_settings
from triplegain_core.storage import endpoints
from triplegain_core.storage.migrate import migrate

# URLs already migrated by this process: migrating is idempotent but takes a lock and a round
# trip, so each run worker does it once per database rather than once per asset.
_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def _settings(database_url: str | None, redis_url: str | None, data_dir: str | None) -> Settings:
    return load_settings(database_url=database_url, redis_url=redis_url,
                         data_dir=Path(data_dir) if data_dir else None)


class PostgresResource(ConfigurableResource):
    """The TripleGain PostgreSQL database, migrated to the current schema before first use."""

    database_url: str | None = Field(
        default=None,
        description="Connection URL; unset: TRIPLEGAIN_DATABASE_URL, config file, embedded server.",
    )
    data_dir: str | None = Field(
        default=None,
        description="Data directory (embedded servers, reports); unset: TRIPLEGAIN_DATA_DIR.",
    )

    def settings(self) -> Settings:
        """The TripleGain settings with this resource's fields as overrides."""
        return _settings(self.database_url, None, self.data_dir)

    def url(self) -> str:
        """The database URL (starting the embedded server if needed), schema migrated."""
        url = endpoints.database_url(self.settings())
        with _migrate_lock:
            if url not in _migrated:
                migrate(url)
                _migrated.add(url)
        return url

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection, closed on exit."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            yield conn


class RedisResource(ConfigurableResource):
    """The TripleGain Redis (hot state and decision streams)."""

    redis_url: str | None = Field(
        default=None,
        description="Redis URL; unset: TRIPLEGAIN_REDIS_URL, config file, embedded server.",
    )
    data_dir: str | None = Field(
        default=None,
        description="Data directory of the embedded server; unset: TRIPLEGAIN_DATA_DIR.",
    )

    def url(self) -> str:
        """The Redis URL, starting the embedded server if needed."""
        return endpoints.redis_url(_settings(None, self.redis_url, self.data_dir))

    def client(self) -> redis.Redis:
        """A client for the configured (or embedded) Redis; the caller closes it."""
        return redis.Redis.from_url(self.url())
