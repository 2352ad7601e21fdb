"""The ``ohlcv_history`` backfill: Dagster's ``materialize`` with real resources, the REST
stand-in driven by real ccxt, into the real PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from streamer.ingest.rest_repair import stored_trades
from streamer.replay.rest import ReplayRestExchange, RestFault
from triplegain_core.marketdata.candles import build_candles
from triplegain_core.marketdata.sources import MarketSimulator
from triplegain_core.model.market import (
    TIMEFRAMES,
    TRADED_SYMBOLS,
    US_PER_MINUTE,
    Candle,
    Trade,
    datetime_to_us,
)
from triplegain_core.storage.market_store import MarketStore
from triplegain_dagster.defs.history.ohlcv import ohlcv_history
from triplegain_dagster.resources import ExchangeResource, PostgresResource

pytestmark = pytest.mark.integration

DAY = "2026-01-05"
DAY_US = datetime_to_us(datetime(2026, 1, 5, tzinfo=UTC))
SIM_START_US = DAY_US - 60 * US_PER_MINUTE  # an hour of the previous day, and of the next
SIM_SECONDS = 26 * 3600
PAGE_SIZE = 1000
ALL_CANDLES = "SELECT * FROM candles ORDER BY timeframe, open_time"


@pytest.fixture(scope="module")
def market() -> list[Trade]:
    return list(MarketSimulator(seed=21, start_us=SIM_START_US, duration_s=SIM_SECONDS))


@contextmanager
def rest_standin(trades: list[Trade]) -> Iterator[ReplayRestExchange]:
    """The stand-in on its own event loop in a thread, as ``materialize`` blocks this one."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ReplayRestExchange(trades, TRADED_SYMBOLS)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def _resources(database_url: str, tmp_path: Path, url: str) -> dict[str, object]:
    return {
        "postgres": PostgresResource(database_url=database_url, data_dir=str(tmp_path)),
        "exchange": ExchangeResource(base_url=url, rate_limit_ms=1, backoff_s=0.001,
                                     page_size=PAGE_SIZE),
    }


def _stored_candles(db: psycopg.Connection, symbol: str) -> list[Candle]:
    """Every stored candle of ``symbol``, all timeframes, finest first."""
    return [
        Candle(symbol, timeframe, int(row.open_time.value // 1000), row.open, row.high,
               row.low, row.close, row.volume, row.trade_count)
        for timeframe in TIMEFRAMES
        for row in MarketStore(db).read_candles(symbol, timeframe).itertuples()
    ]


def _day_candles(market: list[Trade], symbol: str) -> list[Candle]:
    """The day's candles, built from its trades and the first one after it (which proves the
    quiet minutes at its end), finest timeframe first."""
    end = DAY_US + 1440 * US_PER_MINUTE
    own = [t for t in market if t.symbol == symbol]
    day = [t for t in own if DAY_US <= t.ts_us < end]
    after = [t for t in own if t.ts_us >= end][:1]
    return [c for c in build_candles([*day, *after], TIMEFRAMES) if DAY_US <= c.open_time_us < end]


def _backfill(resources: dict[str, object], symbol: str, instance: dg.DagsterInstance,
              log_every: int = 5) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [ohlcv_history], resources=resources, instance=instance,
        partition_key=dg.MultiPartitionKey({"date": DAY, "symbol": symbol}),
        run_config={"ops": {"ohlcv_history": {"config": {"log_every_pages": log_every}}}},
    )


def test_backfill_stores_the_day_exactly_through_faults_and_reruns_idempotently(
    db: psycopg.Connection, database_url: str, tmp_path: Path, market: list[Trade]
) -> None:
    symbol = "XRP/USDT"
    day = [t for t in market
           if t.symbol == symbol and DAY_US <= t.ts_us < DAY_US + 1440 * US_PER_MINUTE]
    instance = dg.DagsterInstance.ephemeral()
    with rest_standin(market) as server:
        for fault in (RestFault.HTTP_429, RestFault.RATE_LIMIT, RestFault.HTTP_500,
                      RestFault.INTERNAL_ERROR):
            server.inject(fault, endpoint="Trades")
        resources = _resources(database_url, tmp_path, server.url)
        result = _backfill(resources, symbol, instance)
        first_rows = db.execute(ALL_CANDLES).fetchall()
        again = _backfill(resources, symbol, instance)
        served = sum(server.faults_served.values())

    assert result.success and again.success
    assert served == 4
    # Exactly the day's trades of the symbol, and the candles built from them.
    assert stored_trades(db, symbol, SIM_START_US, SIM_START_US + SIM_SECONDS * 10**6) == day
    assert _stored_candles(db, symbol) == _day_candles(market, symbol)
    assert db.execute("SELECT count(DISTINCT symbol) FROM candles").fetchone()[0] == 1
    # The rerun changed nothing.
    assert db.execute(ALL_CANDLES).fetchall() == first_rows
    assert MarketStore(db).count_rows("trades") == len(day)

    (materialization,) = result.asset_materializations_for_node("ohlcv_history")
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    pages = -(-len(day) // PAGE_SIZE)
    assert metadata["trades"] == len(day) > 10 * PAGE_SIZE
    assert metadata["candles"] == len(_day_candles(market, symbol))
    assert metadata["candles_1m"] == 1440  # quiet minutes included
    assert metadata["quiet_minutes"] == metadata["minutes_without_trades"]
    assert metadata["candles_1d"] == 1 and metadata["candles_1h"] == 24
    assert pages <= metadata["pages"] <= pages + 1
    assert metadata["rest_retries"] == 4 and metadata["rate_limited"] == 2
    assert metadata["rejected_rows"] == 0
    # Progress in the run's logs every 5 pages.
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    progress = [m for m in messages if "pages," in m and "% of the day" in m]
    assert len(progress) == metadata["pages"] // 5


def test_backfill_partitions_are_per_symbol(
    db: psycopg.Connection, database_url: str, tmp_path: Path, market: list[Trade]
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    with rest_standin(market) as server:
        resources = _resources(database_url, tmp_path, server.url)
        for symbol in ("BTC/USDT", "XRP/BTC"):
            assert _backfill(resources, symbol, instance, log_every=100).success

    for symbol in ("BTC/USDT", "XRP/BTC"):
        assert _stored_candles(db, symbol) == _day_candles(market, symbol)
    assert _stored_candles(db, "XRP/USDT") == []
