"""Where the database and Redis are: configured URLs win, else the embedded servers."""

from __future__ import annotations

from triplegain_core.config import Settings
from triplegain_core.storage.embedded import embedded_postgres_url, embedded_redis_url


def database_url(settings: Settings) -> str:
    """The configured database URL, or the embedded server's (started if needed)."""
    return settings.database_url or embedded_postgres_url(settings.data_dir)


def redis_url(settings: Settings) -> str:
    """The configured Redis URL, or the embedded server's (started if needed)."""
    return settings.redis_url or embedded_redis_url(settings.data_dir)
