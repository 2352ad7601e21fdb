"""Where the database and Redis are: configured URLs win, else the embedded servers.

Both are checked when a process first asks for them, before it writes anything: a server that
does not answer, or a data directory the embedded servers cannot live in, is a :class:`UserMistake`
whose one line names the URL (its password masked) or the folder, and the way out. A configured
server that answered once is not checked again by the same process: a Dagster resource asks for
its URL on every connection, and a second connection per connection would only double the cost.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

from triplegain_core.config import Settings
from triplegain_core.errors import UserMistake
from triplegain_core.storage.embedded import embedded_postgres_url, embedded_redis_url

# Seconds to wait for a configured server before saying it does not answer.
CONNECT_TIMEOUT_S = 5

_PASSWORD_PARAMETER = re.compile(r"(password=)[^&\s]+", re.IGNORECASE)
# The configured servers that answered this process's first check.
_answered: set[str] = set()


class ServerUnreachable(UserMistake):
    """A configured PostgreSQL or Redis does not answer (or refuses the URL's credentials)."""


class DataDirUnwritable(UserMistake):
    """The data directory, where the embedded servers and reports live, cannot be written."""


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (in the user part and in parameters)."""
    parts = urlsplit(url)
    if parts.password is not None:
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{user}:***@{host}")
        url = urlunsplit(parts)
    return _PASSWORD_PARAMETER.sub(r"\1***", url)


def database_url(settings: Settings) -> str:
    """The configured database URL once it answers, or the embedded server's (started if needed)."""
    if settings.database_url:
        if settings.database_url not in _answered:
            check_database(settings.database_url, settings.data_dir)
            _answered.add(settings.database_url)
        return settings.database_url
    return embedded_postgres_url(writable_data_dir(settings.data_dir))


def redis_url(settings: Settings) -> str:
    """The configured Redis URL once it answers, or the embedded server's (started if needed)."""
    if settings.redis_url:
        if settings.redis_url not in _answered:
            check_redis(settings.redis_url, settings.data_dir)
            _answered.add(settings.redis_url)
        return settings.redis_url
    return embedded_redis_url(writable_data_dir(settings.data_dir))


def check_database(url: str, data_dir: Path) -> None:
    """Raise :class:`ServerUnreachable` unless the PostgreSQL at ``url`` accepts a connection."""
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S):
            pass
    except psycopg.Error as exc:
        raise ServerUnreachable(
            f"cannot reach the database at {masked_url(url)} ({_reason(exc, url)}): check the server"
            f" and the URL, or unset TRIPLEGAIN_DATABASE_URL to use the embedded server under {data_dir}") from exc


def check_redis(url: str, data_dir: Path) -> None:
    """Raise :class:`ServerUnreachable` unless the Redis at ``url`` answers a PING."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S)
        client.ping()
        client.close()
    except (redis.RedisError, ValueError, OSError) as exc:
        raise ServerUnreachable(
            f"cannot reach Redis at {masked_url(url)} ({_reason(exc, url)}): check the server and the"
            f" URL, or unset TRIPLEGAIN_REDIS_URL to use the embedded server under {data_dir}") from exc


def writable_data_dir(data_dir: Path) -> Path:
    """``data_dir``, created if needed, once a file can be written in it (else :class:`DataDirUnwritable`)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as exc:
        raise DataDirUnwritable(
            f"data directory {data_dir} cannot be written ({exc.strerror or exc}): set"
            " TRIPLEGAIN_DATA_DIR to a folder you may write") from exc
    return data_dir


def _reason(exc: BaseException, url: str) -> str:
    """The first line of a driver's message, never showing the URL's password."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    # psycopg says "connection failed: connection to server at ... failed: <cause>": keep the cause.
    reason = " ".join(first.rpartition("failed: ")[2].replace("FATAL:", "").split()) or first
    password = urlsplit(url).password
    return reason.replace(password, "***") if password else reason
