"""Gap repair end to end: a stored stream with a hole, repaired over REST through real ccxt
from the stand-in, into the real PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from streamer.ingest.rest_repair import GapRepairer, GapRepairReport, GapRepairs, stored_trades
from streamer.ingest.resume import resume_state
from streamer.replay.rest import ReplayRestExchange, RestFault
from tests.support.dagster_runs import materialize_with_checks
from triplegain_core.adapters.kraken.rest import ExchangeRestConfig, RestMarketData
from triplegain_core.marketdata.candles import build_candles
from triplegain_core.marketdata.gaps import MissedInterval, interval_after_outage
from triplegain_core.marketdata.sequencer import TradeMark
from triplegain_core.marketdata.sources import MarketSimulator
from triplegain_core.model.market import (
    TIMEFRAMES,
    TRADED_SYMBOLS,
    US_PER_MINUTE,
    US_PER_SECOND,
    Candle,
    Trade,
)
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.missed_interval_store import MissedIntervalStore
from triplegain_dagster.defs.market_data.candles import candles_1m
from triplegain_dagster.defs.market_data.market_quality import candles_1m_complete
from triplegain_dagster.resources import DataQualityResource, PostgresResource

pytestmark = pytest.mark.integration

START = 1_767_571_200_000_000  # 2026-01-05 00:00 UTC
MINUTES = 90
HOLE = (START + 31 * US_PER_MINUTE + 17 * US_PER_SECOND,
        START + 52 * US_PER_MINUTE + 41 * US_PER_SECOND)


def _stored_candles(db: psycopg.Connection, symbol: str) -> list[Candle]:
    """Every stored candle of ``symbol``, all timeframes, finest first."""
    return [
        Candle(symbol, timeframe, int(row.open_time.value // 1000), row.open, row.high,
               row.low, row.close, row.volume, row.trade_count)
        for timeframe in TIMEFRAMES
        for row in MarketStore(db).read_candles(symbol, timeframe).itertuples()
    ]


def _repair(trades: list[Trade], db_url: str, intervals: list[MissedInterval],
            faults: list[RestFault]) -> tuple[list[GapRepairReport], int]:
    async def run() -> tuple[list[GapRepairReport], int]:
        async with ReplayRestExchange(trades, TRADED_SYMBOLS) as server:
            for fault in faults:
                server.inject(fault, endpoint="Trades")
            config = ExchangeRestConfig(base_url=server.url, rate_limit_ms=1, backoff_s=0.001,
                                        page_size=100)
            with psycopg.connect(db_url, autocommit=True) as conn:
                async with RestMarketData(config) as rest:
                    repairer = GapRepairer(rest, conn)
                    reports = [await repairer.repair(interval) for interval in intervals]
            return reports, sum(server.faults_served.values())

    return asyncio.run(run())


def test_repaired_candles_equal_those_of_the_uninterrupted_stream(
    db: psycopg.Connection, database_url: str
) -> None:
    trades = list(MarketSimulator(seed=11, start_us=START, duration_s=MINUTES * 60))
    # What the streamer stored: every trade but those of the outage, and the candles it built
    # from them (the minutes around the hole are partial).
    seen = [t for t in trades if not HOLE[0] <= t.ts_us < HOLE[1]]
    store = MarketStore(db)
    store.write_trades(seen)
    store.write_candles(build_candles(seen, TIMEFRAMES))
    assert _stored_candles(db, "BTC/USDT") != build_candles(
        [t for t in trades if t.symbol == "BTC/USDT"], TIMEFRAMES)

    # The intervals the streamer would plan after reconnecting: last stored -> first resumed.
    intervals = []
    for symbol in TRADED_SYMBOLS:
        before = [t for t in seen if t.symbol == symbol and t.ts_us < HOLE[0]]
        after = [t for t in seen if t.symbol == symbol and t.ts_us >= HOLE[1]]
        interval = interval_after_outage(symbol, before[-1].ts_us, after[0].ts_us,
                                         fallback_us=START)
        assert interval is not None
        intervals.append(interval)
    faults = [RestFault.HTTP_429, RestFault.RATE_LIMIT, RestFault.HTTP_500,
              RestFault.INTERNAL_ERROR]

    reports, faults_served = _repair(trades, database_url, intervals, faults)

    assert faults_served == len(faults)
    assert sum(report.rest_retries for report in reports) == len(faults)
    for symbol, report in zip(TRADED_SYMBOLS, reports, strict=True):
        expected = [t for t in trades if t.symbol == symbol]
        assert _stored_candles(db, symbol) == build_candles(expected, TIMEFRAMES)
        assert stored_trades(db, symbol, START, START + MINUTES * US_PER_MINUTE) == expected
        missing = [t for t in expected if HOLE[0] <= t.ts_us < HOLE[1]]
        assert report.new_trades == len(missing) > 0
        assert report.pages >= 2  # 100 trades a page: the cursor paged

    # A second repair of the same intervals changes nothing.
    all_candles = "SELECT * FROM candles ORDER BY symbol, timeframe, open_time"
    before = db.execute(all_candles).fetchall()
    trade_rows = MarketStore(db).count_rows("trades")
    again, _ = _repair(trades, database_url, intervals, [])
    assert all(report.new_trades == 0 for report in again)
    assert db.execute(all_candles).fetchall() == before
    assert MarketStore(db).count_rows("trades") == trade_rows == len(trades)


def test_resume_state_is_the_last_stored_trade_and_the_trades_of_its_open_day(
    db: psycopg.Connection,
) -> None:
    store = MarketStore(db)
    assert resume_state(store, TRADED_SYMBOLS).marks == {}
    # Two hours either side of midnight: only the new day's trades are in open buckets.
    trades = list(MarketSimulator(seed=5, start_us=START - 2 * 3600 * US_PER_SECOND,
                                  duration_s=4 * 3600))
    store.write_trades(trades)

    state = resume_state(store, ("BTC/USDT", "XRP/BTC"))

    for symbol in ("BTC/USDT", "XRP/BTC"):
        last = [t for t in trades if t.symbol == symbol][-1]
        assert state.marks[symbol] == TradeMark(last.trade_id, last.ts_us)
        assert [t for t in state.warm_up if t.symbol == symbol] == [
            t for t in trades if t.symbol == symbol and t.ts_us >= START]
    assert set(state.marks) == {t.symbol for t in state.warm_up} == {"BTC/USDT", "XRP/BTC"}


def test_a_hole_rest_cannot_fill_yet_is_retried_with_backoff_and_fails_the_check_meanwhile(
    db: psycopg.Connection, database_url: str, tmp_path: Path
) -> None:
    """REST first does not serve the missing trades yet, then fails twice; each attempt waits
    twice as long as the one before, the hole stays recorded (and the completeness check fails
    with ERROR) until the third answer brings every missing trade: then the candles are those
    of the uninterrupted stream and the check passes."""
    trades = list(MarketSimulator(seed=11, start_us=START, duration_s=MINUTES * 60))
    symbol = "BTC/USDT"
    lost = [t for t in trades if t.symbol == symbol and HOLE[0] <= t.ts_us < HOLE[1]]
    before = [t for t in trades if t.symbol == symbol and t.ts_us < HOLE[0]][-1]
    after = next(t for t in trades if t.symbol == symbol and t.ts_us >= HOLE[1])
    hole = MissedInterval(symbol, before.ts_us, after.ts_us + 1, lost[0].trade_id,
                          lost[-1].trade_id, "reconnect")
    seen = [t for t in trades if t not in lost]
    store = MarketStore(db)
    store.write_trades(seen)
    store.write_candles(build_candles(seen, TIMEFRAMES))
    quality = {"postgres": PostgresResource(database_url=database_url, data_dir=str(tmp_path)),
               "quality": DataQualityResource(window_days=3650)}

    def completeness() -> dg.AssetCheckEvaluation:
        result = materialize_with_checks([candles_1m, candles_1m_complete], resources=quality)
        (evaluation,) = result.get_asset_check_evaluations()
        return evaluation

    clock = [100.0]
    market_now = [HOLE[0]]  # REST has not printed the missing trades yet

    async def run() -> tuple[list[int], list[int], int]:
        requests, attempts = [], []
        async with ReplayRestExchange(trades, TRADED_SYMBOLS, now_us=lambda: market_now[0]
                                      ) as server:
            config = ExchangeRestConfig(base_url=server.url, rate_limit_ms=1, max_retries=0,
                                        page_size=100)
            with psycopg.connect(database_url, autocommit=True) as conn:
                async with RestMarketData(config) as rest:
                    repairs = GapRepairs(GapRepairer(rest, conn), MissedIntervalStore(conn),
                                         backoff_s=1.0, max_backoff_s=60.0,
                                         clock=lambda: clock[0])
                    repairs.submit(hole)
                    for moment in (0.0, 0.5, 1.0, 2.5, 3.0, 6.9, 7.0):
                        if moment == 1.0:  # printed now, but REST answers 500 twice
                            market_now[0] = trades[-1].ts_us
                            server.inject(RestFault.HTTP_500, times=2, endpoint="Trades")
                        clock[0] = 100.0 + moment
                        await repairs.step()
                        requests.append(server.requests["Trades"])
                        attempts.append(repairs.failed_attempts)
                        if moment == 3.0:
                            (open_hole,) = MissedIntervalStore(conn).open_holes()
                            assert open_hole.attempts == 3
                            assert "500 Internal Server Error" in (open_hole.last_error or "")
                            # Off the event loop: Dagster runs its own, which a running one upsets.
                            check = await asyncio.to_thread(completeness)
                            assert not check.passed
                            assert check.severity == dg.AssetCheckSeverity.ERROR
                            assert check.metadata["unfilled_holes"].value == 1
                    return requests, attempts, repairs.open

    requests, attempts, still_open = asyncio.run(run())

    # Attempts at 0 (not served yet), 1 (500), 3 (500), 7 (filled): 1 s, 2 s, 4 s apart; none
    # in between.
    assert attempts == [1, 1, 2, 2, 3, 3, 3]
    assert requests[1] == requests[0] and requests[3] == requests[2] and requests[5] == requests[4]
    assert requests[6] > requests[5]
    assert still_open == 0 and MissedIntervalStore(db).open_holes() == []
    assert store.trades(symbol) == [t for t in trades if t.symbol == symbol]
    assert _stored_candles(db, symbol) == [c for c in build_candles(trades, TIMEFRAMES)
                                           if c.symbol == symbol]
    (filled_attempts,) = db.execute("SELECT attempts FROM missed_intervals"
                                    " WHERE filled_at IS NOT NULL").fetchone()
    assert filled_attempts == 4
    assert completeness().passed
