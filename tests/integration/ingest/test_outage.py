"""The streamer survives PostgreSQL or Redis going away mid-replay: nothing lost, nothing twice.

Each test starts its own embedded servers (never the machine's shared ones) and takes one down
for a few seconds while real trades are replayed through the exchange stand-in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.outage import (
    Outage,
    OwnServers,
    closed_candles_published,
    last_closed_candle_published,
    replay_through_outages,
    stored_market,
    uninterrupted_candles,
)
from triplegain_core.marketdata.sources import trades_from_file
from triplegain_core.model.market import Trade
from triplegain_core.storage.migrate import migrate

pytestmark = pytest.mark.integration

SYMBOL = "XRP/USDT"
SPEED = 30_000.0  # the 2.5 days of trades in about 7 s


@pytest.fixture
def own_servers(tmp_path: Path) -> Iterator[OwnServers]:
    servers = OwnServers(tmp_path / "servers")
    try:
        migrate(servers.database_url)
        yield servers
    finally:
        servers.close()


@pytest.fixture(scope="module")
def real_trades(shared_data: Path) -> list[Trade]:
    return list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", SYMBOL))


def test_a_postgres_outage_mid_replay_loses_no_row_and_stores_none_twice(
    own_servers: OwnServers, real_trades: list[Trade], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    outage = Outage(2.0, 3.0, own_servers.stop_postgres, own_servers.start_postgres)
    stats = replay_through_outages(own_servers, real_trades, SYMBOL, tmp_path / "data", SPEED,
                                   [outage])
    assert stats.trades == len(real_trades)
    trade_rows, candles = stored_market(own_servers, SYMBOL)
    assert [trade_id for trade_id, _ in trade_rows] == sorted(t.trade_id for t in real_trades)
    assert {n for _, n in trade_rows} == {1}
    assert candles == uninterrupted_candles(real_trades, SYMBOL, tmp_path / "reference")
    holding = [r.message for r in caplog.records if "PostgreSQL unavailable" in r.message]
    assert len(holding) == 1, holding
    assert any("PostgreSQL is back" in r.message for r in caplog.records)


def test_a_redis_outage_mid_replay_loses_no_row_and_no_closed_candle(
    own_servers: OwnServers, real_trades: list[Trade], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    last_seen: list[int] = []

    def stop_redis() -> None:
        own_servers.stop_redis(lambda client: last_seen.append(last_closed_candle_published(client)))

    outage = Outage(2.0, 3.0, stop_redis, own_servers.start_redis)
    stats = replay_through_outages(own_servers, real_trades, SYMBOL, tmp_path / "data", SPEED,
                                   [outage])
    assert stats.trades == len(real_trades)
    trade_rows, candles = stored_market(own_servers, SYMBOL)
    assert [n for _, n in trade_rows] == [1] * len(real_trades)
    assert candles == uninterrupted_candles(real_trades, SYMBOL, tmp_path / "reference")
    # Redis came back empty: every candle closed since the last one seen before is on it.
    published = closed_candles_published(redis.Redis.from_url(own_servers.redis_url))
    due = {open_us for tf, open_us in candles if tf == "1m" and open_us > last_seen[0]}
    assert due, "candles must close after the outage began"
    assert due - published <= {max(due)}  # the last may still be forming at the end
    holding = [r.message for r in caplog.records if "Redis unavailable" in r.message]
    assert len(holding) == 1, holding
