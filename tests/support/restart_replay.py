"""A real-data replay for the executor's restarts: the input published before the executor
runs, `triplegain execute` run as a process (killed and restarted, or not), and the stored
trail of two runs compared table by table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psycopg
import redis

from triplegain_core.contracts.hot_state import CLOSED_CANDLES_STREAM, HotStatePublisher
from triplegain_core.model.market import US_PER_MINUTE, Candle, datetime_to_us

SYMBOL = "XRP/USDT"
BATCH = 250
# The trail of every account, and the checkpoints themselves; wall-clock columns left out.
TRAIL_TABLES: dict[str, tuple[str, ...]] = {
    "technical_signals": (), "trade_intents": (), "risk_checks": (), "orders": (), "order_events": (),
    "fills": (), "positions": (), "position_events": (), "portfolio_snapshots": (),
    "executor_checkpoints": ("saved_at",), "executor_loop_checkpoints": ("saved_at",),
}
REPO = Path(__file__).resolve().parents[2]


def real_candles(shared_data: Path, repeat: int = 1) -> list[Candle]:
    """The real XRP/USDT 5m candles of ``../shared/data`` as consecutive 1m candles of XRP/USDT,
    the series played ``repeat`` times end to end (for a longer run)."""
    frame = pd.read_parquet(shared_data / "binance_xrp-usdt-perp_5m.parquet")
    start = datetime_to_us(frame["ts"].iloc[0].to_pydatetime())
    rows = list(frame.itertuples()) * repeat
    return [Candle(SYMBOL, "1m", start + i * US_PER_MINUTE, row.open, row.high, row.low, row.close, row.volume, 1)
            for i, row in enumerate(rows)]


def publish_closed(client: redis.Redis, candles: list[Candle]) -> list[str]:
    """Publish ``candles`` as the streamer's closed candles, in its batches; their stream ids."""
    publisher = HotStatePublisher(client)
    for start in range(0, len(candles), BATCH):
        publisher.publish([], [], candles[start:start + BATCH], {"ts_us": 0})
    return [entry_id.decode() for entry_id, _ in client.xrange(CLOSED_CANDLES_STREAM)]


def start_executor(database_url: str, redis_url: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`triplegain execute --from-start` as its own process (this checkout's code), logging to ``log``."""
    env = {**os.environ, "TRIPLEGAIN_DATABASE_URL": database_url, "TRIPLEGAIN_REDIS_URL": redis_url,
           "PYTHONPATH": str(REPO), "TRIPLEGAIN_CONFIG": str(config)}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "streamer.cli.main", "execute", "--from-start"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def processed_id(conn: psycopg.Connection) -> str | None:
    """The closed-candle stream id the executor's committed checkpoint has processed up to."""
    row = conn.execute("SELECT candles_id FROM executor_loop_checkpoints").fetchone()
    return None if row is None else row[0]


def wait_until_processed(conn: psycopg.Connection, last_id: str, process: subprocess.Popen[bytes],
                         timeout_s: float = 240.0) -> None:
    """Wait until the executor's checkpoint has processed the stream up to ``last_id``."""
    deadline = time.monotonic() + timeout_s
    while processed_id(conn) != last_id:
        assert process.poll() is None, f"the executor exited with {process.returncode}"
        assert time.monotonic() < deadline, "the executor did not process the whole stream in time"
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the executor as a person would (SIGTERM: it drains and records its last snapshot)."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def table_rows(conn: psycopg.Connection, table: str, excluded: tuple[str, ...]) -> list[tuple[object, ...]]:
    """Every row of ``table`` without the ``excluded`` columns, sorted."""
    columns = [row[0] for row in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND table_schema = 'public'"
        " ORDER BY ordinal_position", (table,)).fetchall() if row[0] not in excluded]
    listed = ", ".join(f'"{c}"::text' for c in columns)
    return sorted(conn.execute(f"SELECT {listed} FROM {table}").fetchall(), key=repr)


def mismatches(expected: psycopg.Connection, actual: psycopg.Connection) -> dict[str, int]:
    """Per table, how many rows differ between the two stores (only tables that differ)."""
    found = {}
    for table, excluded in TRAIL_TABLES.items():
        a, b = set(table_rows(expected, table, excluded)), set(table_rows(actual, table, excluded))
        count_a, count_b = len(table_rows(expected, table, excluded)), len(table_rows(actual, table, excluded))
        if a != b or count_a != count_b:
            found[table] = len(a ^ b) + abs(count_a - count_b)
    return found
