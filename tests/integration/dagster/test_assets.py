"""The Dagster assets and the candle check, materialized against a real PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import psycopg
import pytest

from tests.support.dagster_runs import materialize_with_checks
from triplegain_core.analysis.indicators import feature_frame
from triplegain_core.marketdata.candles import build_candles
from triplegain_core.marketdata.gaps import MissedInterval
from triplegain_core.marketdata.sources import MarketSimulator, trades_from_file
from triplegain_core.model.market import (
    US_PER_MINUTE,
    US_PER_SECOND,
    Asset,
    Candle,
    Trade,
    datetime_to_us,
    us_to_datetime,
)
from triplegain_core.model.orders import OrderPurpose
from triplegain_core.model.signals import Direction
from triplegain_core.portfolio.balances import PortfolioSnapshot
from triplegain_core.portfolio.positions import Position, PositionStatus
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.missed_interval_store import MissedIntervalStore
from triplegain_core.storage.trading_store import TradingStore
from triplegain_dagster import groups
from triplegain_dagster.definitions import defs
from triplegain_dagster.defs.analytics import analytics_schedule
from triplegain_dagster.defs.features.indicators import features_hourly, indicator_features
from triplegain_dagster.defs.market_data.candles import candles_1m
from triplegain_dagster.defs.market_data.market_gate import failed_market_checks
from triplegain_dagster.defs.market_data.market_quality import (
    candles_1m_complete,
    candles_1m_consistent,
    candles_1m_fresh,
    market_trades_consistent,
    market_trades_fresh,
)
from triplegain_dagster.defs.market_data.observations import observe_market_tables
from triplegain_dagster.defs.market_data.trades import market_trades
from triplegain_dagster.defs.reports.report import portfolio_report
from triplegain_dagster.resources import DataQualityResource, PostgresResource, RedisResource

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, tzinfo=UTC)
MINUTES = 300
START_PRICES = {"BTC/USDT": 95_000.0, "XRP/USDT": 2.1, "XRP/BTC": 2.1 / 95_000.0}
ALL_ASSETS = [candles_1m, candles_1m_consistent, candles_1m_fresh, candles_1m_complete,
              indicator_features,
              portfolio_report]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DAY = f"{T0:%Y-%m-%d}"
# The runs that hold the features hold one day and symbol of them (the features' partition).
PARTITION = f"{DAY}|BTC/USDT"


def _series(symbol: str, seed: int, minutes: int = MINUTES) -> list[Candle]:
    """A gap-free, internally consistent 1m random walk."""
    rng = np.random.default_rng(seed)
    closes = START_PRICES[symbol] * np.exp(np.cumsum(rng.normal(0.0, 0.001, minutes)))
    opens = np.concatenate([[START_PRICES[symbol]], closes[:-1]])
    wicks = np.abs(rng.normal(0.0, 0.0005, (2, minutes)))
    start = datetime_to_us(T0)
    return [
        Candle(symbol, "1m", start + m * US_PER_MINUTE, float(opens[m]),
               float(max(opens[m], closes[m]) * (1 + wicks[0, m])),
               float(min(opens[m], closes[m]) * (1 - wicks[1, m])), float(closes[m]),
               float(rng.uniform(0.5, 20.0)), int(rng.integers(1, 50)))
        for m in range(minutes)
    ]


def _market() -> dict[str, list[Candle]]:
    return {symbol: _series(symbol, seed) for seed, symbol in enumerate(START_PRICES)}


def _snapshot(minute: int, btc: float, usdt: float, xrp: float, btc_price: float,
              xrp_price: float) -> PortfolioSnapshot:
    prices = {"BTC/USDT": btc_price, "XRP/USDT": xrp_price, "XRP/BTC": xrp_price / btc_price}
    return PortfolioSnapshot(
        account="paper", time=T0 + timedelta(minutes=minute),
        balances={Asset.BTC: btc, Asset.USDT: usdt, Asset.XRP: xrp}, prices=prices,
        equity_usdt=usdt + btc * btc_price + xrp * xrp_price,
    )


SNAPSHOTS = [
    _snapshot(0, 0.0, 1000.0, 500.0, 95_000.0, 2.10),
    _snapshot(60, 0.002, 810.0, 500.0, 95_400.0, 2.12),
    _snapshot(120, 0.002, 860.0, 480.0, 95_100.0, 2.15),
    _snapshot(240, 0.003, 765.5, 480.0, 96_000.0, 2.18),
]


def _position(pid: str, symbol: str, minute: int, realized: float | None) -> Position:
    closed = realized is not None
    return Position(
        position_id=pid, account="paper", symbol=symbol, direction=Direction.LONG,
        quantity=10.0, entry_price=2.1, stop_loss=2.06, take_profit=2.2,
        opened_at=T0 + timedelta(minutes=minute), entry_notional_usdt=21.0,
        equity_at_entry_usdt=2050.0,
        status=PositionStatus.CLOSED if closed else PositionStatus.OPEN,
        closed_at=T0 + timedelta(minutes=minute + 30) if closed else None,
        exit_price=2.2 if closed else None,
        exit_reason=OrderPurpose.TAKE_PROFIT if closed else None,
        realized_pnl=realized or 0.0,
    )


POSITIONS = [
    _position("p1", "XRP/USDT", 10, 5.0),  # a win, in USDT
    _position("p2", "XRP/BTC", 70, -0.00002),  # a loss, in BTC (the quote of XRP/BTC)
    _position("p3", "BTC/USDT", 200, None),  # still open
]


def _write_trading(db: psycopg.Connection) -> None:
    store = TradingStore(db)
    for snapshot in SNAPSHOTS:
        store.record_snapshot(snapshot)
    for position in POSITIONS:
        store.record_position(position, "opened" if position.closed_at is None else "closed")


@pytest.fixture
def resources(database_url: str, redis_url: str, tmp_path: Path) -> dict[str, object]:
    return {
        "postgres": PostgresResource(database_url=database_url, data_dir=str(tmp_path)),
        "redis": RedisResource(redis_url=redis_url),
        # Freshness judged just after the synthetic market's last minute.
        "quality": DataQualityResource(now=(T0 + timedelta(minutes=MINUTES + 1)).isoformat(),
                                       window_days=3650),
    }


def _check(result: dg.ExecuteInProcessResult,
           name: str = "candles_1m_consistent") -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def _metadata(evaluation: dg.AssetCheckEvaluation) -> dict[str, object]:
    return {key: value.value for key, value in evaluation.metadata.items()}


def _observation(resources: dict[str, object], asset: str) -> dict[str, object]:
    """The metadata of the observation of the streamer's table ``asset``, observed now."""
    postgres = resources["postgres"]
    assert isinstance(postgres, PostgresResource)
    (observation,) = [o for o in observe_market_tables(postgres) if o.asset_key.to_user_string() == asset]
    return {key: value.value for key, value in observation.metadata.items()}


def _materialization(result: dg.ExecuteInProcessResult, node: str) -> dict[str, object]:
    (materialization,) = result.asset_materializations_for_node(node)
    return {key: value.value for key, value in materialization.metadata.items()}


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).is_materializable}
    python_assets = {"indicator_features", "portfolio_report", "ohlcv_history", "market_regime",
                     "portfolio_snapshots", "rebalance_plan", "llm_deliberation", "model_performance",
                     "position_checkpoints", "backtest_run"}
    marts = {key for key in keys if graph.get(dg.AssetKey.from_user_string(key)).group_name == groups.MARTS}
    assert keys == python_assets | marts
    assert {"account_daily_pnl", "trade_stats_by_account_pair", "llm_confidence_calibration",
            "llm_model_daily_usage", "candle_coverage", "decision_funnel"} <= marts
    # The streamer's and the executor's tables are external: observed, never written by Dagster.
    external = {key.to_user_string() for key in graph.get_all_asset_keys() if not graph.get(key).is_materializable}
    assert {"candles_1m", "market_trades", "triplegain/orders", "triplegain/fills"} <= external
    checks = graph.asset_check_keys
    # Beside these, the dbt source tests of the candles and trades (source_*), run with the marts.
    market_checks = {(key.asset_key.to_user_string(), key.name) for key in checks
                     if key.asset_key.to_user_string() in {"candles_1m", "market_trades"}
                     and not key.name.startswith("source_")}
    assert market_checks == {
        ("candles_1m", "candles_1m_consistent"), ("candles_1m", "candles_1m_fresh"),
        ("candles_1m", "candles_1m_complete"), ("market_trades", "market_trades_consistent"),
        ("market_trades", "market_trades_fresh"), ("candles_1m", "freshness_check"),
        ("market_trades", "freshness_check"),
    }
    # The analytics job leaves out what is partitioned by day and symbol (the backfill and the
    # features, each with its own job), the LLM rounds, which have their own schedule and sensor,
    # and the backtests, run on demand; it runs the checks of the streamer's tables.
    job = defs.resolve_job_def("refresh_analytics")
    assert {key.to_user_string() for key in job.asset_layer.selected_asset_keys} == (
        keys - {"ohlcv_history", "indicator_features", "llm_deliberation", "model_performance",
                "position_checkpoints", "backtest_run"})
    assert {(key.asset_key.to_user_string(), key.name) for key in job.asset_layer.asset_graph.asset_check_keys
            } >= market_checks
    assert set(defs.resources) == {"postgres", "redis", "exchange", "quality", "rebalancing", "llm", "dbt"}


def test_refresh_analytics_builds_features_and_report(
    db: psycopg.Connection, resources: dict[str, object], tmp_path: Path
) -> None:
    market = _market()
    MarketStore(db).write_candles([c for candles in market.values() for c in candles])
    _write_trading(db)

    result = materialize_with_checks(ALL_ASSETS, resources=resources, partition_key=PARTITION)

    assert result.success
    check = _check(result)
    assert check.passed, _metadata(check)
    assert _metadata(check)["candles"] == 3 * MINUTES
    coverage = _observation(resources, "candles_1m")
    assert coverage["rows"] == 3 * MINUTES and coverage["symbols"] == 3 and coverage["missing_minutes"] == 0

    # Features: the run held BTC/USDT's day; with the other pairs' days, one row per candle past
    # the warm-up, equal to feature_frame's values over each pair's whole history.
    for symbol in ("XRP/USDT", "XRP/BTC"):
        dg.materialize([indicator_features], resources=resources, partition_key=f"{DAY}|{symbol}")
    store = MarketStore(db)
    for symbol in market:
        candles = store.read_candles(symbol)
        expected = feature_frame(candles)
        expected.index = candles["open_time"]
        stored = dict(db.execute(
            "SELECT open_time, features FROM indicator_features"
            " WHERE symbol = %s AND timeframe = '1m'",
            (symbol,),
        ).fetchall())
        assert len(stored) == int(expected.notna().any(axis=1).sum()) > 0
        for open_time in (expected.index[-1], expected.index[len(expected) // 2]):
            row = expected.loc[open_time]
            expected_row = row.dropna().to_dict()
            assert stored[open_time.to_pydatetime()] == pytest.approx(expected_row, rel=1e-12)
    written = _materialization(result, "indicator_features")["rows_written"]
    assert written == db.execute("SELECT count(*) FROM indicator_features WHERE symbol = 'BTC/USDT'").fetchone()[0]

    # Report: the PNG, the final balances and the figures.
    report = _materialization(result, "portfolio_report")
    png = tmp_path / "reports" / "equity_curve.png"
    assert report["equity_curve_path"] == str(png.resolve())
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    embedded = report["equity_curve"].removeprefix("![equity curve](data:image/png;base64,")
    assert base64.b64decode(embedded.removesuffix(")")) == png.read_bytes()
    first, last = SNAPSHOTS[0], SNAPSHOTS[-1]
    holdings = report["holdings"]
    for asset in (Asset.BTC, Asset.USDT, Asset.XRP):
        start, final = first.balances[asset], last.balances[asset]
        assert f"| {asset.value} | {start:,.8f} | {final:,.8f} |" in holdings
    assert report["equity_start_usdt"] == pytest.approx(first.equity_usdt)
    assert report["equity_end_usdt"] == pytest.approx(last.equity_usdt)
    assert report["pnl_pct"] == pytest.approx(100 * (last.equity_usdt / first.equity_usdt - 1))
    assert report["realized_pnl_usdt"] == pytest.approx(5.0 - 0.00002 * last.prices["BTC/USDT"])
    assert report["closed_trades"] == 2 and report["win_rate"] == pytest.approx(0.5)
    assert "| win rate | 50.0% |" in holdings


def test_indicator_features_rerun_is_idempotent(
    db: psycopg.Connection, resources: dict[str, object]
) -> None:
    MarketStore(db).write_candles(_series("XRP/USDT", seed=7))
    dg.materialize([indicator_features], resources=resources, partition_key=f"{DAY}|XRP/USDT")
    query = "SELECT open_time, features FROM indicator_features ORDER BY 1"
    before = db.execute(query).fetchall()
    assert before
    dg.materialize([indicator_features], resources=resources, partition_key=f"{DAY}|XRP/USDT")
    assert db.execute(query).fetchall() == before


def test_a_days_features_equal_a_computation_over_the_whole_history(
    db: psycopg.Connection, resources: dict[str, object]
) -> None:
    # Three days of XRP/USDT: the partition of the last day reads only its warm-up before the
    # day, and gives what the whole history gives.
    start = T0 - timedelta(days=2)
    candles = [dataclasses.replace(c, open_time_us=c.open_time_us - datetime_to_us(T0) + datetime_to_us(start))
               for c in _series("XRP/USDT", seed=11, minutes=3 * 1440)]
    store = MarketStore(db)
    store.write_candles(candles)
    last_day = f"{start + timedelta(days=2):%Y-%m-%d}"
    result = dg.materialize([indicator_features], resources=resources, partition_key=f"{last_day}|XRP/USDT")
    assert _materialization(result, "indicator_features")["rows_written"] == 1440
    frame = store.read_candles("XRP/USDT")
    expected = feature_frame(frame)
    expected.index = frame["open_time"]
    expected["obv"] -= expected["obv"].iloc[2 * 1440 - 1]  # OBV counts from the day's start
    stored = dict(db.execute("SELECT open_time, features FROM indicator_features").fetchall())
    assert min(stored) == expected.index[2 * 1440].to_pydatetime()  # only the partition's day
    for open_time in (expected.index[2 * 1440], expected.index[2 * 1440 + 700], expected.index[-1]):
        assert stored[open_time.to_pydatetime()] == pytest.approx(expected.loc[open_time].dropna().to_dict(),
                                                                  rel=1e-9)


def _drop_minutes(candles: list[Candle]) -> list[Candle]:
    return candles[:100] + candles[103:]  # three consecutive minutes missing


def _add_misaligned(candles: list[Candle]) -> list[Candle]:
    late = candles[10].open_time_us + 30 * US_PER_SECOND
    stray = dataclasses.replace(candles[10], open_time_us=late)
    return [*candles, stray]  # a second candle in minute 10, 30 s past the minute


def _high_below_close(candles: list[Candle]) -> list[Candle]:
    bad = candles[50]
    return [*candles[:50], dataclasses.replace(bad, high=bad.close * 0.999,
                                                low=min(bad.low, bad.close * 0.998)), *candles[51:]]


def _negative_volume(candles: list[Candle]) -> list[Candle]:
    return [*candles[:70], dataclasses.replace(candles[70], volume=-1.0), *candles[71:]]


@pytest.mark.parametrize(
    ("corrupt", "expected", "severity"),
    [
        (_add_misaligned, {"duplicate_minute_buckets": 1, "misaligned_open_times": 1},
         dg.AssetCheckSeverity.ERROR),
        (_high_below_close, {"high_below_body": 1}, dg.AssetCheckSeverity.ERROR),
        (_negative_volume, {"negative_volume": 1}, dg.AssetCheckSeverity.ERROR),
    ],
    ids=["misaligned-duplicate", "high-below-close", "negative-volume"],
)
def test_candle_check_fails_on_bad_rows(
    db: psycopg.Connection,
    resources: dict[str, object],
    corrupt: Callable[[list[Candle]], list[Candle]],
    expected: dict[str, int],
    severity: dg.AssetCheckSeverity,
) -> None:
    market = _market()
    market["BTC/USDT"] = corrupt(market["BTC/USDT"])
    MarketStore(db).write_candles([c for candles in market.values() for c in candles])

    result = materialize_with_checks([candles_1m, candles_1m_consistent], resources=resources,
                            raise_on_error=False)

    check = _check(result)
    assert not check.passed
    assert check.severity == severity
    metadata = _metadata(check)
    kinds = ("duplicate_minute_buckets", "misaligned_open_times", "high_below_body",
             "low_above_body", "non_positive_prices", "negative_volume")
    assert {kind: metadata[kind] for kind in kinds} == {k: expected.get(k, 0) for k in kinds}
    assert "BTC/USDT" in metadata["details"]


def _gate(instance: dg.DagsterInstance) -> dict[str, object]:
    """What the hourly features and analytics schedules decide on ``instance`` now."""
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=T0 + timedelta(hours=2))
    return {"features": features_hourly(context), "analytics": analytics_schedule(context)}


def test_a_failed_consistency_check_holds_what_is_computed_from_the_market(
    db: psycopg.Connection, resources: dict[str, object]
) -> None:
    """A failed blocking check of the candles stops what the run computes from them, and the
    schedules that compute from them skip, naming the check, until it passes again."""
    candles = _series("BTC/USDT", seed=1)
    MarketStore(db).write_candles(_negative_volume(candles))
    with dg.instance_for_test() as instance:
        result = materialize_with_checks(ALL_ASSETS, resources=resources, partition_key=PARTITION,
                                         raise_on_error=False, instance=instance)
        assert not result.success
        assert not _check(result).passed
        assert result.asset_materializations_for_node("indicator_features") == []
        assert result.asset_materializations_for_node("portfolio_report") == []
        assert db.execute("SELECT count(*) FROM indicator_features").fetchone()[0] == 0
        for decision in _gate(instance).values():
            assert isinstance(decision, dg.SkipReason)
            assert "candles_1m_consistent" in str(decision.skip_message)

        MarketStore(db).write_candles([candles[70]])  # the exchange's candle again
        assert materialize_with_checks([candles_1m, candles_1m_consistent], resources=resources,
                                       instance=instance).success
        gate = _gate(instance)
        assert isinstance(gate["analytics"], dg.RunRequest)
        assert gate["features"] and all(isinstance(r, dg.RunRequest) for r in gate["features"])


def test_empty_database_materializes_and_says_so(resources: dict[str, object]) -> None:
    result = materialize_with_checks(ALL_ASSETS, resources=resources, partition_key=PARTITION)

    assert result.success
    check = _check(result)
    assert check.passed
    assert _metadata(check)["details"] == "No 1-minute candles stored yet: nothing to check."
    assert _observation(resources, "candles_1m")["rows"] == 0
    assert _materialization(result, "indicator_features")["rows_written"] == 0
    report = _materialization(result, "portfolio_report")
    assert report["snapshots"] == 0
    assert "No portfolio snapshots for account `paper`" in report["holdings"]


def test_quiet_minutes_of_real_data_are_no_gaps_but_a_true_hole_fails_without_blocking(
    db: psycopg.Connection, resources: dict[str, object], shared_data: Path
) -> None:
    """Real XRP/ETH trades: the streamer's candles (quiet minutes included) are complete;
    Binance's own 1m candles leave the quiet minutes out, which reads as true holes: an ERROR
    that does not stop the features."""
    trades = list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", "XRP/ETH"))
    MarketStore(db).write_candles(build_candles(trades))

    result = materialize_with_checks([candles_1m, candles_1m_complete], resources=resources)

    check = _check(result, "candles_1m_complete")
    assert check.passed, _metadata(check)
    assert _metadata(check)["missing_minutes"] == 0 and _metadata(check)["candles"] == 3560

    db.execute("DELETE FROM candles")
    frame = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet")
    MarketStore(db).write_candles([
        Candle("XRP/ETH", "1m", datetime_to_us(row.ts.to_pydatetime()), row.open, row.high,
               row.low, row.close, row.volume, 0)
        for row in frame.itertuples()
    ])
    steps = frame["ts"].diff().dropna() // pd.Timedelta(minutes=1)

    result = materialize_with_checks(ALL_ASSETS, resources=resources, partition_key=PARTITION)

    assert result.success
    check = _check(result, "candles_1m_complete")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    metadata = _metadata(check)
    assert metadata["gaps"] == int((steps > 1).sum()) > 0
    assert metadata["missing_minutes"] == int((steps[steps > 1] - 1).sum())
    assert metadata["candles"] == len(frame)
    assert metadata["unfilled_holes"] == 0
    assert _check(result).passed  # the blocking consistency check does not count holes
    assert "XRP/ETH" in str(_observation(resources, "candles_1m")["coverage"])
    # The features ran (the partition's pair has no candle of XRP/ETH's day): holes do not stop them.
    assert result.asset_materializations_for_node("indicator_features")


def test_a_hole_waiting_for_rest_fails_the_completeness_check_until_filled(
    db: psycopg.Connection, resources: dict[str, object]
) -> None:
    market = _market()
    MarketStore(db).write_candles([c for candles in market.values() for c in candles])
    holes = MissedIntervalStore(db)
    start = market["BTC/USDT"][40].open_time_us
    hole = holes.record(MissedInterval("BTC/USDT", start + 5, start + 7 * US_PER_SECOND, 101, 112,
                                       "reconnect"))
    holes.attempt_failed(hole.id, "ExchangeRestError: fetch_trades: HTTP 500")

    result = materialize_with_checks(ALL_ASSETS, resources=resources, partition_key=PARTITION)

    assert result.success  # not blocking: the features and reports go on
    check = _check(result, "candles_1m_complete")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    metadata = _metadata(check)
    assert (metadata["unfilled_holes"], metadata["missing_minutes"]) == (1, 0)
    assert "HTTP 500" in metadata["details"] and "BTC/USDT" in metadata["details"]

    holes.filled(hole.id)
    result = materialize_with_checks([candles_1m, candles_1m_complete], resources=resources)
    assert _check(result, "candles_1m_complete").passed


def test_missing_minutes_fail_the_completeness_check(
    db: psycopg.Connection, resources: dict[str, object]
) -> None:
    market = _market()
    market["BTC/USDT"] = _drop_minutes(market["BTC/USDT"])
    MarketStore(db).write_candles([c for candles in market.values() for c in candles])

    result = materialize_with_checks([candles_1m, candles_1m_complete], resources=resources)

    check = _check(result, "candles_1m_complete")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert {key: _metadata(check)[key] for key in ("gaps", "missing_minutes", "unfilled_holes")
            } == {"gaps": 1, "missing_minutes": 3, "unfilled_holes": 0}


QUALITY_ASSETS = [market_trades, market_trades_consistent, market_trades_fresh, candles_1m,
                  candles_1m_consistent, candles_1m_fresh, candles_1m_complete,
                  indicator_features]


def _replayed_market(db: psycopg.Connection, minutes: int = 120) -> list[Trade]:
    trades = list(MarketSimulator(seed=3, start_us=datetime_to_us(T0), duration_s=minutes * 60))
    store = MarketStore(db)
    store.write_trades(trades)
    store.write_candles(build_candles(trades))
    return trades


def test_quality_checks_pass_on_a_replayed_market(
    db: psycopg.Connection, database_url: str, tmp_path: Path
) -> None:
    trades = _replayed_market(db)
    last = us_to_datetime(trades[-1].ts_us)
    resources = {
        "postgres": PostgresResource(database_url=database_url, data_dir=str(tmp_path)),
        "quality": DataQualityResource(now=(last + timedelta(minutes=3)).isoformat(),
                                       max_staleness_minutes=5),
    }

    result = materialize_with_checks(QUALITY_ASSETS, resources=resources, partition_key=PARTITION)

    assert result.success
    for name in ("market_trades_consistent", "market_trades_fresh", "candles_1m_consistent",
                 "candles_1m_fresh", "candles_1m_complete"):
        assert _check(result, name).passed, _metadata(_check(result, name))
    assert _metadata(_check(result, "market_trades_consistent"))["trades"] == len(trades)
    assert _observation(resources, "market_trades")["rows"] == len(trades)
    assert _materialization(result, "indicator_features")["rows_written"] > 0


def test_stale_stream_warns_without_blocking(
    db: psycopg.Connection, database_url: str, tmp_path: Path
) -> None:
    trades = _replayed_market(db)
    now = us_to_datetime(trades[-1].ts_us) + timedelta(minutes=45)
    resources = {
        "postgres": PostgresResource(database_url=database_url, data_dir=str(tmp_path)),
        "quality": DataQualityResource(now=now.isoformat(), max_staleness_minutes=30),
    }

    result = materialize_with_checks(QUALITY_ASSETS, resources=resources, partition_key=PARTITION)

    assert result.success
    for name in ("market_trades_fresh", "candles_1m_fresh"):
        check = _check(result, name)
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        metadata = _metadata(check)
        assert metadata["stale_symbols"] == 3
        assert metadata["max_age_minutes"] > 30
        assert metadata["now"] == now.isoformat()
    assert _materialization(result, "indicator_features")["rows_written"] > 0


def _trade_back_in_time(trades: list[Trade]) -> Trade:
    """A print of an old trade id one second after the last trade of its symbol."""
    last = [t for t in trades if t.symbol == "XRP/USDT"][-1]
    return dataclasses.replace(last, trade_id=5, ts_us=last.ts_us + US_PER_SECOND)


def _negative_price(trades: list[Trade]) -> Trade:
    last = [t for t in trades if t.symbol == "BTC/USDT"][-1]
    return dataclasses.replace(last, trade_id=last.trade_id + 1, ts_us=last.ts_us + 1,
                               price=-1.0)


@pytest.mark.parametrize(
    ("broken_row", "expected"),
    [
        (_trade_back_in_time, {"trade_ids_back_in_time": 1, "duplicate_trade_ids": 1}),
        (_negative_price, {"non_positive_prices": 1}),
    ],
    ids=["id-back-in-time", "negative-price"],
)
def test_broken_trade_fails_its_check_and_holds_what_follows(
    db: psycopg.Connection, database_url: str, tmp_path: Path,
    broken_row: Callable[[list[Trade]], Trade], expected: dict[str, int],
) -> None:
    trades = _replayed_market(db)
    MarketStore(db).write_trades([broken_row(trades)])
    resources = {
        "postgres": PostgresResource(database_url=database_url, data_dir=str(tmp_path)),
        "quality": DataQualityResource(now=us_to_datetime(trades[-1].ts_us).isoformat()),
    }

    with dg.instance_for_test() as instance:
        result = materialize_with_checks(QUALITY_ASSETS, resources=resources, partition_key=PARTITION,
                                         raise_on_error=False, instance=instance)
        # The candles are built from the trades, but they are external: the trades' check cannot
        # stop this run's features (Dagster blocks only the direct dependents of a checked
        # asset); the schedules computing from the market skip while it fails.
        failed = failed_market_checks(instance)

    assert not result.success
    check = _check(result, "market_trades_consistent")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    metadata = _metadata(check)
    kinds = ("non_positive_prices", "non_positive_quantities", "duplicate_trade_ids",
             "trade_ids_back_in_time")
    assert {kind: metadata[kind] for kind in kinds} == {k: expected.get(k, 0) for k in kinds}
    assert failed == ["market_trades_consistent"]
