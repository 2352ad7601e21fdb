"""Restore on start: a trading loop rebuilt from its PostgreSQL checkpoint trades on exactly as
one that never stopped, on real candles (the XRP/USDT candles of ``../shared/data``)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from streamer.executor.loop import TradingLoop
from tests.support.restart_replay import mismatches, publish_closed, real_candles
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import HotStateReader
from triplegain_core.storage.checkpoints import CheckpointStore
from triplegain_core.storage.control_store import ControlStore
from triplegain_core.storage.embedded import drop_database, ensure_database
from triplegain_core.storage.migrate import migrate
from triplegain_core.storage.trading_store import TradingStore

SETTINGS = Settings(symbols=("XRP/USDT",))


@pytest.fixture
def second_db(pg_admin_url: str) -> Iterator[psycopg.Connection]:
    """A second fresh database: the run that is interrupted, beside the one that is not."""
    name = f"tg_test_{uuid.uuid4().hex[:12]}"
    ensure_database(pg_admin_url, name)
    params = conninfo_to_dict(pg_admin_url)
    params["dbname"] = name
    url = make_conninfo(**params)
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn
    drop_database(pg_admin_url, name)


def checkpointed_loop(client: redis.Redis, conn: psycopg.Connection) -> TradingLoop:
    """The loop as `triplegain execute` builds it: checkpointed, reading control commands."""
    trail = TradingStore(conn)
    return TradingLoop(SETTINGS, HotStateReader(client), trail, start_stream_id="0",
                       checkpoints=CheckpointStore(conn, SETTINGS.account, trail.transactions),
                       controls=ControlStore(conn))


def drain(loop: TradingLoop) -> None:
    while loop.cycle():
        pass


def test_a_loop_restored_at_random_cycles_trades_as_one_that_never_stopped(
    redis_client: redis.Redis, db: psycopg.Connection, second_db: psycopg.Connection, shared_data
) -> None:
    candles = real_candles(shared_data)
    chunks = [candles[i:i + 97] for i in range(0, len(candles), 97)]
    ids = publish_closed(redis_client, candles)
    whole = checkpointed_loop(redis_client, db)
    drain(whole)
    whole.kernel.record_snapshot()
    redis_client.flushdb()

    # The same candles published in chunks; after some chunks the loop is dropped (as by a crash
    # after a commit) and a new one restores from the checkpoint.
    rng = random.Random(11)
    restarts = 0
    open_across = 0
    loop = checkpointed_loop(redis_client, second_db)
    assert not loop.restore()  # nothing stored yet: a fresh start
    for chunk in chunks:
        publish_closed(redis_client, chunk)
        drain(loop)
        if rng.random() < 0.3:
            open_across += sum(a.positions.open_count for a in loop.kernel.accounts)
            loop = checkpointed_loop(redis_client, second_db)
            assert loop.restore()
            restarts += 1
    loop.kernel.record_snapshot()

    assert restarts >= 5 and open_across > 0
    assert len(ids) == len(candles)
    closed = second_db.execute("SELECT count(*) FROM positions WHERE status = 'closed'").fetchone()
    assert closed is not None and closed[0] >= 20
    # The stream ids differ between the two publications, and only they: the comparison sees them.
    assert mismatches(db, second_db) == {"executor_loop_checkpoints": 2}


def test_a_running_loop_whose_cycle_was_rolled_back_restores_and_trades_it_again(
    redis_client: redis.Redis, db: psycopg.Connection, second_db: psycopg.Connection, shared_data,
) -> None:
    candles = real_candles(shared_data)[:1200]
    publish_closed(redis_client, candles)
    whole = checkpointed_loop(redis_client, db)
    drain(whole)
    redis_client.flushdb()

    loop = checkpointed_loop(redis_client, second_db)
    publish_closed(redis_client, candles[:700])
    drain(loop)
    committed = second_db.execute("SELECT count(*) FROM portfolio_snapshots").fetchone()[0]
    # The next cycle cannot record: another session holds the checkpoint table (a server that
    # stopped answering would do the same), so its transaction is rolled back, trail and all.
    second_db.execute("SET lock_timeout = '300ms'")
    publish_closed(redis_client, candles[700:])
    with psycopg.connect(second_db.info.dsn, password=None) as blocker:
        blocker.execute("LOCK TABLE executor_loop_checkpoints IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            loop.cycle()
    assert second_db.execute("SELECT count(*) FROM portfolio_snapshots").fetchone()[0] == committed
    assert loop.kernel.market_time_us == candles[-1].close_time_us  # the kernel ran ahead of the store

    assert loop.restore()
    assert loop.kernel.market_time_us == candles[699].close_time_us
    drain(loop)

    assert mismatches(db, second_db) == {"executor_loop_checkpoints": 2}
