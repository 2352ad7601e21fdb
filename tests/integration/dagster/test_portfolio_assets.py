"""The regime, portfolio and rebalance assets and the drift sensor, on a real PostgreSQL."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import psycopg
import pytest

from tests.support.dagster_runs import materialize_with_checks
from triplegain_core.analysis.indicators import feature_frame
from triplegain_core.analysis.regime import RegimeDetector
from triplegain_core.marketdata.candles import build_candles
from triplegain_core.marketdata.sources import MarketSimulator
from triplegain_core.marketdata.timeframes import resample_candles
from triplegain_core.model.market import US_PER_MINUTE, Asset, Candle, datetime_to_us
from triplegain_core.model.orders import OrderPurpose
from triplegain_core.model.signals import Direction
from triplegain_core.portfolio.balances import PortfolioSnapshot
from triplegain_core.portfolio.metrics import max_drawdown
from triplegain_core.portfolio.positions import Position, PositionStatus
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.portfolio_store import PortfolioStore
from triplegain_core.storage.trading_store import TradingStore
from triplegain_dagster.definitions import defs
from triplegain_dagster.defs.market_data.candles import candles_1m
from triplegain_dagster.defs.market_data.market_quality import candles_1m_consistent
from triplegain_dagster.defs.portfolio.drift_sensor import rebalance_drift_sensor
from triplegain_dagster.defs.portfolio.rebalance import rebalance_plan
from triplegain_dagster.defs.portfolio.regime import market_regime
from triplegain_dagster.defs.portfolio.snapshots import portfolio_snapshots
from triplegain_dagster.resources import (
    DataQualityResource,
    PostgresResource,
    RebalancingResource,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, tzinfo=UTC)
MINUTES = 600  # 120 five-minute bars: past every warm-up, with an ATR% history of 50+
BTC, XRP = 95_000.0, 2.1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _trend(symbol: str, start: float, drift: float, seed: int, minutes: int = MINUTES) -> list[Candle]:
    """1m candles whose log price moves ``drift`` a minute plus noise, volume rising with it."""
    rng = np.random.default_rng(seed)
    closes = start * np.exp(np.cumsum(drift + rng.normal(0.0, 0.0008, minutes)))
    opens = np.concatenate([[start], closes[:-1]])
    wicks = np.abs(rng.normal(0.0, 0.0004, (2, minutes)))
    volume = rng.uniform(5.0, 10.0, minutes) * np.linspace(1.0, 3.0, minutes)
    t0 = datetime_to_us(T0)
    return [
        Candle(symbol, "1m", t0 + m * US_PER_MINUTE, float(opens[m]),
               float(max(opens[m], closes[m]) * (1 + wicks[0, m])),
               float(min(opens[m], closes[m]) * (1 - wicks[1, m])), float(closes[m]),
               float(volume[m]), 10)
        for m in range(minutes)
    ]


def _snapshot(account: str, minute: float, btc: float, usdt: float, xrp: float,
              btc_price: float = BTC, xrp_price: float = XRP) -> PortfolioSnapshot:
    prices = {"BTC/USDT": btc_price, "XRP/USDT": xrp_price, "XRP/BTC": xrp_price / btc_price}
    return PortfolioSnapshot(
        account=account, time=T0 + timedelta(minutes=minute),
        balances={Asset.BTC: btc, Asset.USDT: usdt, Asset.XRP: xrp}, prices=prices,
        equity_usdt=usdt + btc * btc_price + xrp * xrp_price,
    )


# Each asset a third of ~3000 USDT: inside every band.
BALANCED = {"btc": 1000.0 / BTC, "usdt": 1000.0, "xrp": 1000.0 / XRP}
# 80% XRP, 10% each of BTC and USDT: the 60% rule and the drift rule both fire.
XRP_HEAVY = {"btc": 300.0 / BTC, "usdt": 300.0, "xrp": 2400.0 / XRP}


def _position(pid: str, minute: int, realized: float) -> Position:
    return Position(
        position_id=pid, account="paper", symbol="XRP/USDT", direction=Direction.LONG,
        quantity=10.0, entry_price=2.1, stop_loss=2.06, take_profit=2.2,
        opened_at=T0 + timedelta(minutes=minute), entry_notional_usdt=21.0,
        equity_at_entry_usdt=3000.0, status=PositionStatus.CLOSED,
        closed_at=T0 + timedelta(minutes=minute + 5), exit_price=2.1 + realized / 10.0,
        exit_reason=OrderPurpose.TAKE_PROFIT if realized > 0 else OrderPurpose.STOP_LOSS,
        realized_pnl=realized,
    )


@pytest.fixture
def resources(database_url: str, tmp_path: Path) -> dict[str, object]:
    return {
        "postgres": PostgresResource(database_url=database_url, data_dir=str(tmp_path)),
        "rebalancing": RebalancingResource(),
    }


def _materialization(result: dg.ExecuteInProcessResult, node: str) -> dict[str, object]:
    (materialization,) = result.asset_materializations_for_node(node)
    return {key: value.value for key, value in materialization.metadata.items()}


def _record(db: psycopg.Connection, *snapshots: PortfolioSnapshot) -> None:
    store = TradingStore(db)
    for snapshot in snapshots:
        store.record_snapshot(snapshot)


# --- market_regime --------------------------------------------------------------------------

def test_market_regime_stores_each_pair(db: psycopg.Connection, resources: dict[str, object]) -> None:
    market = {
        "BTC/USDT": _trend("BTC/USDT", BTC, +0.0015, seed=1),
        "XRP/USDT": _trend("XRP/USDT", XRP, -0.0015, seed=2),
        "XRP/BTC": _trend("XRP/BTC", XRP / BTC, 0.0, seed=3),
    }
    MarketStore(db).write_candles([c for candles in market.values() for c in candles])

    result = dg.materialize([market_regime], resources=resources)

    assert result.success
    rows = {row[0]: row[1:] for row in db.execute(
        "SELECT symbol, timeframe, time, close, regime, score, volatility, components"
        " FROM market_regimes").fetchall()}
    assert set(rows) == set(market)
    for symbol, candles in market.items():
        frame = pd.DataFrame({
            "open_time": pd.to_datetime([c.open_time for c in candles], utc=True),
            **{f: [getattr(c, f) for c in candles] for f in ("open", "high", "low", "close", "volume")},
        })
        bars = resample_candles(frame, "5m")
        expected = RegimeDetector().detect_frame(pd.concat([bars, feature_frame(bars)], axis=1))
        timeframe, time, close, regime, score, volatility, components = rows[symbol]
        assert timeframe == "5m"
        assert time == T0 + timedelta(minutes=MINUTES - 5)  # the last closed 5m bar
        assert close == pytest.approx(candles[-1].close)
        assert (regime, volatility) == (expected.regime.value, expected.volatility.value)
        assert score == pytest.approx(expected.score)
        assert {c["name"]: c["score"] for c in components} == pytest.approx(
            {c.name: c.score for c in expected.components})
    assert rows["BTC/USDT"][3] == "bull" and rows["XRP/USDT"][3] == "bear"

    metadata = _materialization(result, "market_regime")
    assert metadata["rows_written"] == 3
    assert metadata["btc_usdt_regime"] == "bull" and metadata["xrp_usdt_regime"] == "bear"
    table = metadata["regimes"]
    assert "| BTC/USDT | 5m |" in table and "| **bull** |" in table and "| **bear** |" in table

    # A rerun rewrites the same candles' rows.
    dg.materialize([market_regime], resources=resources)
    assert db.execute("SELECT count(*) FROM market_regimes").fetchone()[0] == 3


def test_market_regime_says_which_pairs_are_warming_up(
    db: psycopg.Connection, resources: dict[str, object]
) -> None:
    MarketStore(db).write_candles(_trend("BTC/USDT", BTC, 0.001, seed=4, minutes=60))

    result = dg.materialize([market_regime], resources=resources)

    assert result.success
    assert db.execute("SELECT count(*) FROM market_regimes").fetchone()[0] == 0
    table = _materialization(result, "market_regime")["regimes"]
    assert "| BTC/USDT |  | indicators still warming up" in table
    assert "| XRP/BTC |  | no 1m candles stored | warming up |" in table


# --- portfolio_snapshots --------------------------------------------------------------------

def test_portfolio_snapshots_tabulates_each_account(
    db: psycopg.Connection, resources: dict[str, object], tmp_path: Path
) -> None:
    paper = [_snapshot("paper", 0, 0.0, 1000.0, 500.0), _snapshot("paper", 1, 0.0, 900.0, 500.0),
             _snapshot("paper", 2, 0.0, 950.0, 500.0)]
    heavy = _snapshot("llm_claude", 2, **XRP_HEAVY)
    _record(db, *paper, heavy)
    for position in (_position("w", 0, 0.5), _position("l", 1, -0.2)):
        TradingStore(db).record_position(position, "closed")

    result = dg.materialize([portfolio_snapshots], resources=resources)

    assert result.success
    metadata = _materialization(result, "portfolio_snapshots")
    assert metadata["accounts"] == 2
    assert metadata["total_equity_usdt"] == pytest.approx(paper[-1].equity_usdt + heavy.equity_usdt)
    holdings = metadata["holdings"]
    assert "| paper | 2026-01-05 00:02 | USDT | 950.00000000 | 1.00 | 950.00 | 47.5% |" in holdings
    assert "| paper | 2026-01-05 00:02 | XRP | 500.00000000 | 2.10 | 1,050.00 | 52.5% |" in holdings
    assert "| llm_claude | 2026-01-05 00:02 | XRP |" in holdings and "| 80.0% |" in holdings
    drawdown = max_drawdown([s.equity_usdt for s in paper])
    assert drawdown == pytest.approx(100.0 / 2050.0)
    assert (f"| paper | 2 | 50.0% | +0.30 | -50.00 | {100 * drawdown:.2f}% |"
            in metadata["metrics"])
    assert "| llm_claude | 0 | n/a | +0.00 | +0.00 | 0.00% | n/a | n/a |" in metadata["metrics"]

    png = tmp_path / "reports" / "allocation.png"
    assert metadata["allocation_path"] == str(png.resolve())
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    embedded = metadata["allocation"].removeprefix("![allocation](data:image/png;base64,")
    assert base64.b64decode(embedded.removesuffix(")")) == png.read_bytes()


def test_portfolio_snapshots_without_snapshots_says_so(resources: dict[str, object]) -> None:
    result = dg.materialize([portfolio_snapshots], resources=resources)

    assert result.success
    metadata = _materialization(result, "portfolio_snapshots")
    assert metadata["accounts"] == 0
    assert metadata["holdings"].startswith("No portfolio snapshots stored yet")


# --- rebalance_plan -------------------------------------------------------------------------

def test_rebalance_plan_sells_a_concentrated_xrp_holding(
    db: psycopg.Connection, resources: dict[str, object]
) -> None:
    heavy, balanced = _snapshot("paper", 0, **XRP_HEAVY), _snapshot("llm_claude", 0, **BALANCED)
    _record(db, heavy, balanced)

    result = dg.materialize([rebalance_plan], resources=resources)

    assert result.success
    plans = {p.account: p for a in ("paper", "llm_claude") for p in PortfolioStore(db).plans(a)}
    plan = plans["paper"].plan
    fired = {(hit.trigger.value, hit.asset) for hit in plan.triggers}
    assert ("concentration", Asset.XRP) in fired and ("drift", Asset.XRP) in fired
    assert plan.before[Asset.XRP] == pytest.approx(0.8)
    assert plan.trades and all(t.sells is Asset.XRP for t in plan.trades)
    assert {t.symbol for t in plan.trades} == {"XRP/USDT", "XRP/BTC"}
    # Back to a third each, less the 0.1% fees.
    assert plan.after == pytest.approx(dict.fromkeys(Asset, 1 / 3), abs=1e-3)
    assert plan.fees_usdt == pytest.approx(0.001 * sum(t.value_usdt for t in plan.trades), rel=1e-2)
    assert plans["paper"].quote_source == "last_price"
    # Balanced: no trigger, no trade.
    assert plans["llm_claude"].plan.triggers == () and plans["llm_claude"].plan.trades == ()
    assert db.execute("SELECT account, has_trades FROM rebalance_plans ORDER BY 1").fetchall() == [
        ("llm_claude", False), ("paper", True)]

    markdown = _materialization(result, "rebalance_plan")["plan"]
    assert "| concentration | XRP |" in markdown and "| XRP/USDT | sell |" in markdown
    assert "| XRP | 80.0% | 33.3% |" in markdown
    assert "No trigger fired" in markdown  # the balanced account
    assert "recommendation only" in markdown


def test_rebalance_plan_sees_a_regime_change(
    db: psycopg.Connection, resources: dict[str, object]
) -> None:
    candles = _trend("BTC/USDT", BTC, +0.0015, seed=1)
    MarketStore(db).write_candles(candles)
    # Valued at the last close, balanced: only the regime can trigger.
    btc_price = candles[-1].close
    balanced = {"btc": 1000.0 / btc_price, "usdt": 1000.0, "xrp": 1000.0 / XRP}
    _record(db, _snapshot("paper", MINUTES, **balanced, btc_price=btc_price))
    dg.materialize([market_regime, rebalance_plan], resources=resources)
    (first,) = PortfolioStore(db).plans("paper")
    assert first.regime == "bull" and first.previous_regime is None and first.plan.triggers == ()

    # The market turns: a new regime row, a new snapshot, a new plan.
    db.execute("INSERT INTO market_regimes (symbol, timeframe, time, close, regime, score,"
               " volatility, natr, components) VALUES ('BTC/USDT', '5m', %s, %s, 'bear', -0.5,"
               " 'high', 0.4, '[]')", (T0 + timedelta(minutes=MINUTES), BTC))
    _record(db, _snapshot("paper", MINUTES + 5, **balanced, btc_price=btc_price))
    # The sensor sees the change before the plan does.
    (request,), _ = _evaluate(resources, dg.DagsterInstance.ephemeral(), None)
    assert request.tags["triggers"] == "regime_change:*"
    result = dg.materialize([rebalance_plan], resources=resources, run_config=request.run_config)

    latest = PortfolioStore(db).plans("paper")[-1]
    assert (latest.previous_regime, latest.regime) == ("bull", "bear")
    assert [hit.trigger.value for hit in latest.plan.triggers] == ["regime_change"]
    assert "regime changed from bull to bear" in _materialization(result, "rebalance_plan")["plan"]


def test_rebalance_plan_uses_newer_closes_and_book_quotes(
    db: psycopg.Connection, resources: dict[str, object]
) -> None:
    # The snapshot valued XRP at 2.1; the tape has since run up 30%: the gain trigger fires.
    _record(db, _snapshot("paper", 0, **BALANCED))
    later = datetime_to_us(T0 + timedelta(minutes=10))
    MarketStore(db).write_candles([
        Candle("XRP/USDT", "1m", later, 2.7, 2.74, 2.72, 2.73, 100.0, 5),
        Candle("BTC/USDT", "1m", later, BTC, BTC, BTC, BTC, 1.0, 5),
        Candle("XRP/BTC", "1m", later, 2.73 / BTC, 2.73 / BTC, 2.73 / BTC, 2.73 / BTC, 100.0, 5),
    ])
    for symbol, bid, ask in (("BTC/USDT", BTC - 5, BTC + 5), ("XRP/USDT", 2.729, 2.731),
                             ("XRP/BTC", 2.73 / BTC * 0.999, 2.73 / BTC * 1.001)):
        db.execute("INSERT INTO book_snapshots VALUES (%s, %s, 1, %s, %s, %s, %s)",
                   (symbol, T0 + timedelta(minutes=10), [bid], [1.0], [ask], [1.0]))

    result = dg.materialize([rebalance_plan], resources=resources)

    (stored,) = PortfolioStore(db).plans("paper")
    assert stored.prices["XRP/USDT"] == 2.73 and stored.reference_prices["XRP/USDT"] == XRP
    gain = [hit for hit in stored.plan.triggers if hit.trigger.value == "gain"]
    assert [hit.asset for hit in gain] == [Asset.XRP]
    assert gain[0].value == pytest.approx(2.73 / XRP - 1)
    assert stored.quote_source == "book"
    # Both directions at the book, 0.1% per leg: a spread and 0.3% of fees leave no edge.
    forward, backward = stored.cycles
    assert forward.gross_return == pytest.approx(2.729 / ((BTC + 5) * 2.73 / BTC * 1.001) - 1)
    assert backward.gross_return == pytest.approx(2.73 / BTC * 0.999 * (BTC - 5) / 2.731 - 1)
    for cycle in (forward, backward):
        assert cycle.net_return == pytest.approx((1 + cycle.gross_return) * 0.999 ** 3 - 1)
        assert not cycle.profitable
    assert stored.plan.arbitrage == ()
    markdown = _materialization(result, "rebalance_plan")["plan"]
    assert "| USDT -> BTC -> XRP -> USDT |" in markdown and "Quotes: book." in markdown


def test_rebalance_plan_reports_a_profitable_cycle(
    db: psycopg.Connection, resources: dict[str, object]
) -> None:
    _record(db, _snapshot("paper", 0, **BALANCED))
    # XRP/BTC quoted 1% under the cross of the USDT pairs: USDT -> BTC -> XRP -> USDT pays.
    cheap_cross = XRP / BTC * 0.99
    for symbol, price in (("BTC/USDT", BTC), ("XRP/USDT", XRP), ("XRP/BTC", cheap_cross)):
        db.execute("INSERT INTO book_snapshots VALUES (%s, %s, 1, %s, %s, %s, %s)",
                   (symbol, T0, [price], [1.0], [price], [1.0]))

    result = dg.materialize([rebalance_plan], resources=resources)

    (stored,) = PortfolioStore(db).plans("paper")
    (cycle,) = stored.plan.arbitrage
    assert cycle.path == (Asset.USDT, Asset.BTC, Asset.XRP, Asset.USDT)
    assert cycle.net_return == pytest.approx(0.999 ** 3 / 0.99 - 1)
    assert stored.plan.trades == ()  # no trigger fired: only the cycle is recommended
    assert _materialization(result, "rebalance_plan")["profitable_cycles"] == 1
    assert "| USDT -> BTC -> XRP -> USDT | +1.010% | +0.707% | **yes** |" in (
        _materialization(result, "rebalance_plan")["plan"])


# --- rebalance_drift_sensor -----------------------------------------------------------------

def _evaluate(resources: dict[str, object], instance: dg.DagsterInstance,
              cursor: str | None) -> tuple[list[dg.RunRequest] | dg.SkipReason, str | None]:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return rebalance_drift_sensor(context), context.cursor


def test_drift_sensor_requests_a_plan_once_per_drifted_snapshot(
    db: psycopg.Connection, resources: dict[str, object]
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    _record(db, _snapshot("paper", 0, **XRP_HEAVY))

    requests, cursor = _evaluate(resources, instance, None)

    (request,) = requests
    assert request.asset_selection == [rebalance_plan.key]
    assert request.run_key == f"rebalance:paper:{(T0).isoformat()}"
    assert request.tags == {"account": "paper", "triggers": (
        "concentration:XRP,drift:BTC,drift:USDT,drift:XRP")}
    assert datetime.fromisoformat(json.loads(cursor)["paper"]["snapshot_time"]) == T0

    # The same snapshot again: nothing new to request.
    again, cursor = _evaluate(resources, instance, cursor)
    assert isinstance(again, dg.SkipReason)
    assert "paper: no snapshot after 2026-01-05 00:00:00 UTC" in again.skip_message

    # A newer snapshot with the same drift within the hour: the plan still stands.
    _record(db, _snapshot("paper", 30, **XRP_HEAVY))
    same, cursor = _evaluate(resources, instance, cursor)
    assert isinstance(same, dg.SkipReason) and "same triggers" in same.skip_message
    # An hour after the last request the persisting drift is planned again.
    _record(db, _snapshot("paper", 60, **XRP_HEAVY))
    (replan,), cursor = _evaluate(resources, instance, cursor)
    assert replan.run_key == f"rebalance:paper:{(T0 + timedelta(minutes=60)).isoformat()}"

    # The run the sensor asks for plans that account and sells the XRP.
    result = dg.materialize([rebalance_plan], resources=resources, run_config=replan.run_config)
    assert result.success
    (plan,) = PortfolioStore(db).plans("paper")
    assert plan.snapshot_time == T0 + timedelta(minutes=60)
    assert plan.plan.trades and all(t.sells is Asset.XRP for t in plan.plan.trades)


def test_drift_sensor_skips_a_balanced_portfolio(
    db: psycopg.Connection, resources: dict[str, object]
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    empty, cursor = _evaluate(resources, instance, None)
    assert isinstance(empty, dg.SkipReason)
    assert empty.skip_message == "No portfolio snapshots stored yet: nothing to rebalance."

    _record(db, _snapshot("paper", 0, **BALANCED))
    skipped, cursor = _evaluate(resources, instance, cursor)

    assert isinstance(skipped, dg.SkipReason)
    assert skipped.skip_message == ("No rebalance needed. paper: snapshot 2026-01-05 00:00:00 UTC"
                                    " is within every trigger")
    # It drifts: the next snapshot is requested.
    _record(db, _snapshot("paper", 1, **XRP_HEAVY))
    (request,), _ = _evaluate(resources, instance, cursor)
    assert request.run_key == f"rebalance:paper:{(T0 + timedelta(minutes=1)).isoformat()}"


# --- definitions ----------------------------------------------------------------------------

def test_definitions_register_the_portfolio_assets_and_sensor() -> None:
    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert {"market_regime", "portfolio_snapshots", "rebalance_plan"} <= keys
    sensor = defs.resolve_sensor_def("rebalance_drift_sensor")
    assert defs.resolve_job_def(sensor.job_name).asset_layer.selected_asset_keys == {
        rebalance_plan.key}
    assert sensor.default_status is dg.DefaultSensorStatus.RUNNING
    assert "rebalancing" in defs.resources
    graph = defs.resolve_asset_graph()
    assert graph.get(rebalance_plan.key).parent_keys == {market_regime.key, portfolio_snapshots.key}


# --- the three together, on a replayed market -----------------------------------------------

def test_portfolio_assets_on_a_replayed_market(
    db: psycopg.Connection, database_url: str, tmp_path: Path
) -> None:
    minutes = 360
    trades = list(MarketSimulator(seed=5, start_us=datetime_to_us(T0), duration_s=minutes * 60))
    market = MarketStore(db)
    market.write_trades(trades)
    market.write_candles(build_candles(trades))
    last = market.last_candles(["BTC/USDT", "XRP/USDT", "XRP/BTC"])
    end = T0 + timedelta(minutes=minutes)
    # The demo's starting account (1000 USDT + 500 XRP, no BTC), valued at the last closes.
    prices = {symbol: candle.close for symbol, candle in last.items()}
    TradingStore(db).record_snapshot(PortfolioSnapshot(
        account="paper", time=end, balances={Asset.BTC: 0.0, Asset.USDT: 1000.0, Asset.XRP: 500.0},
        prices=prices, equity_usdt=1000.0 + 500.0 * prices["XRP/USDT"],
    ))
    resources = {
        "postgres": PostgresResource(database_url=database_url, data_dir=str(tmp_path)),
        "rebalancing": RebalancingResource(),
        "quality": DataQualityResource(now=end.isoformat()),
    }

    result = materialize_with_checks([candles_1m, candles_1m_consistent, market_regime,
                             portfolio_snapshots, rebalance_plan], resources=resources)

    assert result.success
    assert db.execute("SELECT count(*) FROM market_regimes").fetchone()[0] == 3
    (stored,) = PortfolioStore(db).plans("paper")
    assert stored.regime in {"bull", "bear", "sideways"}
    # No BTC against a third as target: the plan buys BTC with what is over its third.
    plan = stored.plan
    assert ("drift", Asset.BTC) in {(h.trigger.value, h.asset) for h in plan.triggers}
    assert Asset.BTC in {t.buys for t in plan.trades}
    assert {t.sells for t in plan.trades} == {a for a in Asset if plan.before[a] > 1 / 3}
    assert plan.after == pytest.approx(dict.fromkeys(Asset, 1 / 3), abs=1e-3)
    assert stored.quote_source == "last_price"
    assert (tmp_path / "reports" / "allocation.png").is_file()
