"""The streamer's tables as external assets: observed with their coverage, judged fresh by their
stalest symbol."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from tests.support.dagster_runs import materialize_with_checks
from triplegain_core.model.market import Candle, Side, Trade, datetime_to_us
from triplegain_core.storage.market_store import MarketStore
from triplegain_dagster.defs.market_data.candles import candles_1m
from triplegain_dagster.defs.market_data.observations import (
    FRESHNESS_LIMIT,
    market_freshness_checks,
    market_tables_observer,
)
from triplegain_dagster.defs.market_data.trades import market_trades
from triplegain_dagster.resources import PostgresResource


def _minute_floor(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _candles(symbol: str, last_open: datetime, minutes: int, skip: int | None = None) -> list[Candle]:
    return [Candle(symbol, "1m", datetime_to_us(last_open - timedelta(minutes=n)), 1.0, 1.0, 1.0, 1.0, 1.0, 1)
            for n in range(minutes) if n != skip]


def _trade(symbol: str, trade_id: int, at: datetime) -> Trade:
    return Trade(symbol, trade_id, datetime_to_us(at), 1.0, 1.0, Side.BUY)


def _observe(database_url: str, instance: dg.DagsterInstance) -> dict[str, dict[str, object]]:
    """Tick the observer sensor once, store its observations on ``instance``; their metadata by asset."""
    context = dg.build_sensor_context(instance=instance,
                                      resources={"postgres": PostgresResource(database_url=database_url)})
    result = market_tables_observer(context)
    assert isinstance(result, dg.SensorResult)
    observations = {}
    for event in result.asset_events:
        assert isinstance(event, dg.AssetObservation)
        instance.report_runless_asset_event(event)
        observations[event.asset_key.to_user_string()] = {k: v.value for k, v in event.metadata.items()}
    return observations


def _freshness(instance: dg.DagsterInstance) -> dict[str, bool]:
    result = materialize_with_checks([candles_1m, market_trades, *market_freshness_checks], instance=instance)
    return {e.asset_key.to_user_string(): e.passed for e in result.get_asset_check_evaluations()}


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def test_the_observation_carries_the_coverage_and_the_stalest_symbols_time(
    db: psycopg.Connection, database_url: str, instance: dg.DagsterInstance
) -> None:
    """Rows, symbols and missing minutes per table; the update time is the stalest symbol's
    last complete candle (its open + a minute) and last trade."""
    now = _minute_floor(datetime.now(UTC))
    store = MarketStore(db)
    store.write_candles(_candles("BTC/USDT", now, 30, skip=10) + _candles("XRP/USDT", now - timedelta(minutes=5), 30))
    store.write_trades([_trade("BTC/USDT", 1, now - timedelta(minutes=2)),
                        _trade("XRP/USDT", 7, now - timedelta(minutes=4))])

    observed = _observe(database_url, instance)

    candles = observed["candles_1m"]
    assert (candles["rows"], candles["symbols"], candles["missing_minutes"]) == (59, 2, 1)
    assert candles["dagster/last_updated_timestamp"] == (now - timedelta(minutes=4)).timestamp()
    assert "BTC/USDT" in str(candles["coverage"]) and "XRP/USDT" in str(candles["coverage"])
    trades = observed["market_trades"]
    assert (trades["rows"], trades["symbols"]) == (2, 2)
    assert trades["dagster/last_updated_timestamp"] == (now - timedelta(minutes=4)).timestamp()
    assert _freshness(instance) == {"candles_1m": True, "market_trades": True}


def test_one_stalled_pair_makes_its_table_late(
    db: psycopg.Connection, database_url: str, instance: dg.DagsterInstance
) -> None:
    """XRP/USDT's stream stopped 20 minutes ago while BTC/USDT's runs: the candles fail their
    freshness check (the limit is 10 minutes), the trades, fresh on both pairs, pass."""
    now = _minute_floor(datetime.now(UTC))
    stalled = now - FRESHNESS_LIMIT - timedelta(minutes=10)
    store = MarketStore(db)
    store.write_candles(_candles("BTC/USDT", now, 5) + _candles("XRP/USDT", stalled, 5))
    store.write_trades([_trade("BTC/USDT", 1, now), _trade("XRP/USDT", 2, now)])

    _observe(database_url, instance)

    assert _freshness(instance) == {"candles_1m": False, "market_trades": True}


def test_an_empty_database_is_observed_without_an_update_time(
    database_url: str, instance: dg.DagsterInstance
) -> None:
    """No row yet: the observation says so and claims no update time."""
    observed = _observe(database_url, instance)
    assert observed["candles_1m"]["rows"] == 0
    assert "dagster/last_updated_timestamp" not in observed["candles_1m"]
    assert "No 1-minute candles stored yet" in str(observed["candles_1m"]["coverage"])
