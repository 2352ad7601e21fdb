"""The crash test: the streamer, a real ``triplegain stream`` process, killed with SIGKILL at
seeded-random moments of a replay of the real XRP/ETH trades and restarted each time, ends with
the candles of an uninterrupted run: zero lost, zero duplicated.

The replay exchange (WebSocket) and its REST stand-in run in this process; the REST side
serves only the trades the stream has printed so far, as the real exchange would. A killed
streamer loses what it held in memory (trades and candles not yet written) and misses what is
printed while it is down; once restarted it resumes from the stored data, finds the hole at
the first trade it receives and backfills it over REST through ccxt before going on.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import redis

from streamer.replay.exchange import ReplayExchange
from streamer.replay.rest import ReplayRestExchange
from triplegain_core.marketdata.candles import build_candles
from triplegain_core.marketdata.sources import trades_from_file
from triplegain_core.model.market import TIMEFRAMES, Trade
from triplegain_core.storage.market_store import MarketStore

pytestmark = pytest.mark.integration

SYMBOL = "XRP/USDT"  # the pair the XRP/ETH trades stand for (the streamer's known symbols)
SEED = 20191011
KILLS = 5
TRIPLEGAIN = Path(sys.executable).with_name("triplegain")
DEADLINE_S = 180
_BACKFILLED = re.compile(r"backfilled (\d+) XRP/USDT trades")


@dataclass(frozen=True)
class KillPlan:
    """When to kill one streamer: once it has stored ``stored_more`` trades more than the
    store held at its start (0: once it has subscribed), ``delay_s`` later."""

    stored_more: int
    delay_s: float


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: how many trades the exchange had sent, and how many were stored."""

    sent: int
    stored: int


@dataclass(frozen=True)
class CrashRun:
    """What the replay with kills did."""

    kills: list[Kill]
    logs: list[str]  # each streamer process's output
    rest_trade_calls: int


class _TradeCounter:
    """Counts the stored trades on one connection of its own (polled from a worker thread)."""

    def __init__(self, database_url: str) -> None:
        self._conn = psycopg.connect(database_url, autocommit=True)

    async def count(self) -> int:
        return await asyncio.to_thread(
            lambda: self._conn.execute("SELECT count(*) FROM trades").fetchone()[0])

    def close(self) -> None:
        self._conn.close()


def _replay_with_kills(trades: list[Trade], plans: list[KillPlan], database_url: str,
                       redis_url: str, config: Path) -> CrashRun:
    async def scenario(counter: _TradeCounter) -> CrashRun:
        async with ReplayExchange(trades, (SYMBOL,), speed=0) as exchange, \
                ReplayRestExchange(trades, (SYMBOL,), now_us=lambda: exchange.now_us) as rest:
            env = {**os.environ, "TRIPLEGAIN_CONFIG": str(config),
                   "TRIPLEGAIN_DATABASE_URL": database_url, "TRIPLEGAIN_REDIS_URL": redis_url,
                   "TRIPLEGAIN_WS_URL": exchange.url, "TRIPLEGAIN_REST_URL": rest.url,
                   "TRIPLEGAIN_DATA_DIR": str(config.parent)}
            kills: list[Kill] = []
            log_files: list[Path] = []
            processes: list[asyncio.subprocess.Process] = []

            async def start() -> asyncio.subprocess.Process:
                # Logs to a file: a pipe nobody reads until the kill could fill and block it.
                log_files.append(config.parent / f"stream-{len(log_files)}.log")
                with log_files[-1].open("wb") as log:
                    processes.append(await asyncio.create_subprocess_exec(
                        str(TRIPLEGAIN), "stream", env=env, stdout=log, stderr=log))
                return processes[-1]

            async def stored_at_least(count: int) -> None:
                while await counter.count() < count:
                    await asyncio.sleep(0.01)

            async def start_streaming() -> asyncio.subprocess.Process:
                # From its subscription on, the new streamer streams (the replay, paused
                # while no streamer was subscribed, goes on) and handles SIGTERM.
                subscribed = exchange.trade_subscriptions
                streamer = await start()
                while exchange.trade_subscriptions == subscribed:
                    await asyncio.sleep(0.002)
                return streamer

            async def crash_and_finish() -> CrashRun:
                for plan in plans:
                    stored = await counter.count()
                    streamer = await start_streaming()
                    # Before the first kill something must be stored (a streamer with an
                    # empty store has no mark to resume from).
                    await stored_at_least(min(max(stored + plan.stored_more, 1), len(trades)))
                    await asyncio.sleep(plan.delay_s)
                    streamer.send_signal(signal.SIGKILL)
                    assert await streamer.wait() == -signal.SIGKILL
                    kills.append(Kill(exchange.trades_sent, await counter.count()))
                streamer = await start_streaming()
                await stored_at_least(len(trades))
                streamer.send_signal(signal.SIGTERM)  # a clean end: drain, flush, exit
                returncode = await streamer.wait()
                logs = [path.read_text() for path in log_files]
                assert returncode == 0, logs[-1][-3000:]
                assert exchange.trades_sent == len(trades)
                return CrashRun(kills, logs, rest.requests["Trades"])

            try:
                return await crash_and_finish()
            except BaseException:  # shown by pytest on failure: where the run stood
                print(f"kills {kills}; exchange sent {exchange.trades_sent} trades, "
                      f"{exchange.trade_subscriptions} subscriptions; stored "
                      f"{await counter.count()}; last streamer's log:\n"
                      f"{log_files[-1].read_text()[-3000:] if log_files else ''}")
                raise
            finally:  # a failed run leaves no streamer behind
                for process in processes:
                    if process.returncode is None:
                        process.kill()
                        await process.wait()

    counter = _TradeCounter(database_url)
    try:
        # Bounded: a streamer that lost trades for good would leave this waiting for ever.
        return asyncio.run(asyncio.wait_for(scenario(counter), DEADLINE_S))
    finally:
        counter.close()


def test_streamer_killed_at_random_moments_ends_with_the_uninterrupted_candles(
    shared_data: Path, database_url: str, redis_url: str, redis_client: redis.Redis,
    db: psycopg.Connection, tmp_path: Path,
) -> None:
    # redis_client: the streamers publish into the test Redis database, flushed around the test.
    trades = list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", SYMBOL))
    rng = random.Random(SEED)
    # Alternately, a streamer killed soon after it subscribed (during its backfill, or right
    # after it), and one killed between two of its writes once it has stored 1,000 to 2,000
    # more trades.
    plans = [KillPlan(0 if kill % 2 else rng.randint(1000, 2000), rng.uniform(0.0, 0.4))
             for kill in range(KILLS)]
    config = tmp_path / "triplegain.toml"
    # Batches big and slow enough that every kill loses trades held in memory, far more than
    # the 50 a trade snapshot brings back: the restarted streamer must backfill them.
    config.write_text(f'symbols = ["{SYMBOL}"]\nwrite_batch_size = 1000\n'
                      'write_interval_s = 0.5\nrest_rate_limit_ms = 20\n')

    run = _replay_with_kills(trades, plans, database_url, redis_url, config)

    assert len(run.kills) == KILLS
    assert all(kill.stored > 0 for kill in run.kills)
    # The holes were real, and REST (through ccxt) is what closed them.
    assert sum(kill.sent - kill.stored for kill in run.kills) > 50 * KILLS
    backfilled = [sum(int(n) for n in _BACKFILLED.findall(log)) for log in run.logs[1:]]
    assert sum(backfilled) > 0 and run.rest_trade_calls > 0
    assert all("Traceback" not in log for log in run.logs)

    # Trades: every one of the file, once, as the exchange printed it.
    store = MarketStore(db)
    count, distinct = db.execute("SELECT count(*), count(DISTINCT trade_id) FROM trades"
                                 ).fetchone()
    assert count == distinct == len(trades)
    assert store.trades(SYMBOL) == trades

    # Candles of every timeframe: those of an uninterrupted run (built offline from the same
    # trades in their order; test_ingest shows an uninterrupted streamer stores exactly these).
    expected = build_candles(trades, TIMEFRAMES)
    for timeframe in TIMEFRAMES:
        stored = store.candles(SYMBOL, timeframe)
        assert stored == [c for c in expected if c.timeframe == timeframe], timeframe
    duplicates = db.execute("SELECT count(*) - count(DISTINCT (symbol, timeframe, open_time))"
                            " FROM candles").fetchone()[0]
    assert duplicates == 0

    # And the exchange's own 1m and 5m candles of that window (its file leaves out the quiet
    # minutes, stored here as quiet candles, as Kraken publishes them).
    for timeframe in ("1m", "5m"):
        exchange = pd.read_parquet(shared_data / f"binance_xrp-eth_{timeframe}.parquet")
        stored = [c for c in store.candles(SYMBOL, timeframe) if not c.quiet]
        assert [(c.open_time_us, c.open, c.high, c.low, c.close) for c in stored] == list(zip(
            exchange["ts"].dt.as_unit("us").astype("int64").tolist(),
            exchange["open"].tolist(), exchange["high"].tolist(), exchange["low"].tolist(),
            exchange["close"].tolist(), strict=True)), timeframe
        assert [c.volume for c in stored] == pytest.approx(exchange["volume"].tolist(),
                                                            rel=1e-12), timeframe
