"""A real-data replay for the executor's restarts: the input published before the executor
runs, `triplegain execute` run as a process (killed and restarted, or not), and the stored
trail of two runs compared table by table."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
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
    "fills": (), "positions": (), "position_events": (), "portfolio_snapshots": (), "guard_events": (),
    "executor_checkpoints": ("saved_at",), "executor_loop_checkpoints": ("saved_at",),
}
REPO = Path(__file__).resolve().parents[2]
# What the executor logs once its first cycle after the restore (or fresh start) is done.
FIRST_CYCLE_LOG = "first cycle with the restored state done"


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


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    """Stop the executor as a person would (SIGTERM: it drains and records its last snapshot),
    once it runs its loop (before, the signal would not be its own to handle yet)."""
    deadline = time.monotonic() + 120
    while FIRST_CYCLE_LOG not in log.read_text():
        assert process.poll() is None, f"the executor exited with {process.returncode}"
        assert time.monotonic() < deadline, "the executor ran no cycle in time"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def write_config(folder: Path, failure_limit: int | None = None) -> Path:
    """The executor's configuration for the replay: one pair, hardly a pause between cycles (the
    feed gets one read of 1,000 candles in before each, so a run is several cycles, several
    commits), the market's age judged on the replay's own clock; ``failure_limit`` for the
    failure breaker (default: the configuration's)."""
    config = folder / "triplegain.toml"
    limit = "" if failure_limit is None else f"failure_limit = {failure_limit}\n"
    config.write_text(f'symbols = ["XRP/USDT"]\nloop_interval_s = 0.001\n\n[guards]\nclock = "market"\n{limit}')
    return config


def run_uninterrupted(conn: psycopg.Connection, database_url: str, redis_url: str, config: Path, log: Path,
                      ids: list[str]) -> None:
    """Run the executor over the published stream ``ids`` to its end, untouched, and stop it."""
    process = start_executor(database_url, redis_url, config, log)
    try:
        wait_until_processed(conn, ids[-1], process)
        stop(process, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def table_rows(conn: psycopg.Connection, table: str, excluded: tuple[str, ...],
               state_without: tuple[str, ...] = ()) -> list[tuple[object, ...]]:
    """Every row of ``table`` without the ``excluded`` columns, sorted; a ``kernel_state``
    column without its ``state_without`` keys."""
    columns = [row[0] for row in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND table_schema = 'public'"
        " ORDER BY ordinal_position", (table,)).fetchall() if row[0] not in excluded]
    dropped = "".join(f" - '{key}'" for key in state_without)
    listed = ", ".join(f'("{c}"{dropped})::text' if c == "kernel_state" and dropped else f'"{c}"::text'
                       for c in columns)
    return sorted(conn.execute(f"SELECT {listed} FROM {table}").fetchall(), key=repr)


def mismatches(expected: psycopg.Connection, actual: psycopg.Connection,
               state_without: tuple[str, ...] = ()) -> dict[str, int]:
    """Per table, how many rows differ between the two stores (only tables that differ); the
    checkpoints' kernel state compared without its ``state_without`` keys."""
    found = {}
    for table, excluded in TRAIL_TABLES.items():
        a = table_rows(expected, table, excluded, state_without)
        b = table_rows(actual, table, excluded, state_without)
        if set(a) != set(b) or len(a) != len(b):
            found[table] = len(set(a) ^ set(b)) + abs(len(a) - len(b))
    return found


@dataclass(frozen=True, slots=True)
class Kill:
    """One SIGKILL: the stream position the committed checkpoint had reached, and the
    positions it held open, at that moment."""

    processed: int
    open_positions: int


@dataclass
class KilledRun:
    """What a replay with kills did: the kills, and the logs of each process."""

    kills: list[Kill] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)


def open_positions(conn: psycopg.Connection) -> int:
    """Open positions over every account of the committed checkpoint."""
    row = conn.execute("SELECT coalesce(sum(jsonb_array_length(state->'positions')), 0)"
                       " FROM executor_checkpoints").fetchone()
    return 0 if row is None else int(row[0])


def run_with_kills(conn: psycopg.Connection, database_url: str, redis_url: str, config: Path, logs: Path,
                   ids: list[str], kills: int, rng: random.Random) -> KilledRun:
    """Run the executor over the published stream ``ids``, killing it with SIGKILL ``kills``
    times and restarting it each time under the same account names, then let it finish.

    Kill ``k`` comes once the committed checkpoint has passed a seeded random point of the
    stream (the points spread over it, and past where the process started, so each run makes
    progress), after a random 0 to 200 ms more: inside a later cycle (its transaction lost) or
    between two."""
    run = KilledRun()
    position = {entry: index + 1 for index, entry in enumerate(ids)}
    targets = sorted(rng.sample(range(len(ids) // 10, len(ids) * 9 // 10), kills))
    for attempt in range(kills + 1):
        log = logs / f"executor-{attempt}.log"
        done = processed_id(conn)
        start = 0 if done is None else position[done]
        process = start_executor(database_url, redis_url, config, log)
        try:
            if attempt == kills:
                wait_until_processed(conn, ids[-1], process)
                stop(process, log)
            else:
                # Past its target and past where it started (unless the run is over), and running.
                target = min(max(targets[attempt], start + 1), len(ids))
                deadline = time.monotonic() + 120
                while ((done := processed_id(conn)) is None or position[done] < target
                       or FIRST_CYCLE_LOG not in log.read_text()):
                    assert process.poll() is None, f"the executor exited with {process.returncode}"
                    assert time.monotonic() < deadline, "the executor did not get there in time"
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, 0.2))
                process.kill()
                process.wait()
                done = processed_id(conn)
                run.kills.append(Kill(0 if done is None else position[done], open_positions(conn)))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        run.logs.append(log.read_text())
    return run


def time_to_first_cycle(database_url: str, redis_url: str, config: Path, log: Path) -> float:
    """Milliseconds from starting a restored executor's process to its first cycle with the
    restored state (as it logs it); the process is then stopped."""
    started = time.perf_counter()
    process = start_executor(database_url, redis_url, config, log)
    try:
        while FIRST_CYCLE_LOG not in log.read_text():
            assert process.poll() is None, f"the executor exited with {process.returncode}"
            assert time.perf_counter() - started < 120, "no first cycle in time"
            time.sleep(0.005)
        elapsed = (time.perf_counter() - started) * 1000
        stop(process, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return elapsed
