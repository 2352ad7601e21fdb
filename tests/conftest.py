"""Shared fixtures: real PostgreSQL and Redis servers for the integration tests.

``TRIPLEGAIN_TEST_DATABASE_URL`` / ``TRIPLEGAIN_TEST_REDIS_URL`` (set by .ci/run when the
machine's servers answer) name servers to use; otherwise the embedded ones start under a
temporary folder. Each test gets its own freshly migrated database and a flushed Redis DB,
so the test Redis URL must point at a server (or DB number) reserved for tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from triplegain_core.storage.dagster_instance import DAGSTER_DATABASE_SUFFIX
from triplegain_core.storage.embedded import (
    drop_database,
    embedded_postgres_url,
    embedded_redis_url,
    ensure_database,
    stop_embedded,
)
from triplegain_core.storage.migrate import migrate

SHARED_DATA = Path(os.environ.get("TRIPLEGAIN_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")
# Set by .ci/run: CI always has the real data, so its absence fails a test there instead of
# skipping it silently. On a bare machine the skip stays, with its reason.
REQUIRE_SHARED_DATA = "TRIPLEGAIN_REQUIRE_SHARED_DATA"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real market data folder beside the checkout (skips when it is absent, fails when
    ``TRIPLEGAIN_REQUIRE_SHARED_DATA`` is set)."""
    if not SHARED_DATA.is_dir():
        reason = f"real market data folder {SHARED_DATA} is absent (it lives beside the checkout)"
        if os.environ.get(REQUIRE_SHARED_DATA):
            pytest.fail(f"{reason}; {REQUIRE_SHARED_DATA} is set, so it is required", pytrace=False)
        pytest.skip(reason)
    return SHARED_DATA


@pytest.fixture(scope="session")
def embedded_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("embedded")
    yield folder
    stop_embedded(folder)


@pytest.fixture(scope="session")
def pg_admin_url(request: pytest.FixtureRequest) -> str:
    """URL of the server's maintenance database, where test databases are created."""
    configured = os.environ.get("TRIPLEGAIN_TEST_DATABASE_URL")
    if configured:
        return configured
    return embedded_postgres_url(request.getfixturevalue("embedded_dir"), database="postgres")


def _fresh_database(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with the schema migrated, dropped when done."""
    name = f"tg_test_{uuid.uuid4().hex[:12]}"
    ensure_database(pg_admin_url, name)
    params = conninfo_to_dict(pg_admin_url)
    params["dbname"] = name
    url = make_conninfo(**params)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(pg_admin_url, name)
        # Dagster's database beside it, when a test gave the database a Dagster instance.
        drop_database(pg_admin_url, f"{name}{DAGSTER_DATABASE_SUFFIX}")


@pytest.fixture
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with the schema migrated, dropped after the test."""
    yield from _fresh_database(pg_admin_url)


@pytest.fixture(scope="module")
def module_database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database shared by the tests of one module (one costly run they all read)."""
    yield from _fresh_database(pg_admin_url)


@pytest.fixture
def second_database_url(pg_admin_url: str) -> Iterator[str]:
    """Another fresh database, for a second run to compare with the first (restarts, outages)."""
    yield from _fresh_database(pg_admin_url)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    configured = os.environ.get("TRIPLEGAIN_TEST_REDIS_URL")
    if configured:
        return configured
    return embedded_redis_url(request.getfixturevalue("embedded_dir"))


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A Redis client on a flushed database."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


# Fixtures that reach a PostgreSQL or Redis server (starting the embedded ones when none is configured).
SERVER_FIXTURES = frozenset({"embedded_dir", "pg_admin_url", "database_url", "module_database_url", "db", "redis_url",
                             "redis_client"})
SERVER_FOLDERS = ("integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a server ``integration``, so ``-m "not integration"`` starts none.

    A test needs one when it sits under ``tests/integration`` or ``tests/e2e`` or asks for a
    server fixture; the marker follows from that, so a new test cannot forget it.
    """
    tests_root = Path(__file__).resolve().parent
    for item in items:
        folder = item.path.resolve().relative_to(tests_root).parts[0]
        uses_server = bool(SERVER_FIXTURES & set(getattr(item, "fixturenames", ())))
        if (folder in SERVER_FOLDERS or uses_server) and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)
