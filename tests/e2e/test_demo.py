"""The whole loop through the real WebSocket path: exchange -> streamer -> stores -> executor
-> paper fills -> Dagster report, on real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dagster import AssetKey, DagsterInstance

from streamer.demo.run import REPO_ROOT, DemoResult, materialize_assets, run_demo
from streamer.replay.source import replay_source
from triplegain_core.config import Settings
from triplegain_core.marketdata.candles import build_candles
from triplegain_core.storage.dagster_instance import DAGSTER_DATABASE_URL_ENV, prepare_dagster_home
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.trading_store import TradingStore

pytestmark = pytest.mark.e2e

HOURS = 4.0
SEED = 11


@pytest.fixture(scope="module")
def demo(module_database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """One demo run that every test of the module reads (none of them changes what it traded)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("demo"))
    source = replay_source("sim", "XRP/USDT", hours=HOURS, seed=SEED)
    return asyncio.run(run_demo(settings, source, module_database_url, redis_url, progress=False))


@pytest.fixture
def db(demo: DemoResult) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the demo's database."""
    with psycopg.connect(demo.database_url, autocommit=True) as conn:
        yield conn


def test_stored_candles_equal_those_built_offline(demo: DemoResult, db: psycopg.Connection) -> None:
    offline = build_candles(replay_source("sim", "XRP/USDT", hours=HOURS, seed=SEED).trades)
    stored = MarketStore(db).read_candles()
    assert len(stored) == len(offline) == sum(demo.candles_per_symbol.values())
    expected = sorted(
        (c.symbol, c.open_time_us, c.open, c.high, c.low, c.close, c.volume, c.trade_count)
        for c in offline
    )
    actual = sorted(
        (r.symbol, int(r.open_time.value // 1000), r.open, r.high, r.low, r.close, r.volume, r.trade_count)
        for r in stored.itertuples()
    )
    assert actual == expected
    assert set(demo.candles_per_symbol) == {"BTC/USDT", "XRP/USDT", "XRP/BTC"}


def test_every_fill_passed_a_risk_check(demo: DemoResult, db: psycopg.Connection) -> None:
    assert demo.activity["fills"] > 0, "the demo window must trade for this test to mean anything"
    audited = TradingStore(db).fills_with_checks(demo.account)
    assert len(audited) == demo.activity["fills"]
    assert all(approved for _, _, approved in audited)
    rejected_orders = db.execute(
        "SELECT count(*) FROM orders o JOIN risk_checks c USING (check_id) WHERE NOT c.approved"
    ).fetchone()[0]
    assert rejected_orders == 0


def test_no_position_exceeded_a_fifth_of_the_portfolio(demo: DemoResult, db: psycopg.Connection) -> None:
    positions = TradingStore(db).positions(demo.account)
    assert positions
    for position in positions:
        assert position.entry_notional_usdt <= 0.20 * position.equity_at_entry_usdt * (1 + 1e-9)


def test_report_asset_materializes(demo: DemoResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    materialize_assets(demo, tmp_path, demo.database_url)
    # The demo's instance, as `make ui` opens it: runs in Dagster's database beside the demo's.
    env = prepare_dagster_home(tmp_path / "dagster", REPO_ROOT / "dagster.yaml", demo.database_url)
    monkeypatch.setenv(DAGSTER_DATABASE_URL_ENV, env[DAGSTER_DATABASE_URL_ENV])
    with DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:
        event = instance.get_latest_materialization_event(AssetKey("portfolio_report"))
    assert event is not None
    assert (tmp_path / "reports" / "equity_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
