"""The dbt marts, built by Dagster on a real PostgreSQL: the figures a trader reads, checked by
hand on a small trading history, and a dbt test that fails as an asset check."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
from dagster_dbt import DbtCliResource

from triplegain_core.storage.dbt_connection import MARTS_SCHEMA
from triplegain_dagster.defs.marts.dbt_marts import analytics_marts
from triplegain_dagster.defs.marts.project import DBT_PROJECT, dbt_executable
from triplegain_dagster.resources import PostgresResource

DAY = datetime(2026, 1, 1, tzinfo=UTC)
BTC_USDT = 50_000.0


def _minute(n: int) -> datetime:
    return DAY + timedelta(minutes=n)


def _candles(db: psycopg.Connection) -> None:
    # BTC/USDT: minutes 0-9 but 4 and 5 (one hole of two minutes); XRP/USDT: 0-2, one quiet.
    rows = [("BTC/USDT", n, 12) for n in range(10) if n not in (4, 5)]
    rows += [("XRP/USDT", 0, 3), ("XRP/USDT", 1, 0), ("XRP/USDT", 2, 5)]
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO candles (symbol, timeframe, open_time, open, high, low, close, volume, trade_count)"
            " VALUES (%s, '1m', %s, %s, %s, %s, %s, %s, %s)",
            [(symbol, _minute(n), price, price, price, price, float(count), count)
             for symbol, n, count in rows
             for price in [BTC_USDT if symbol == "BTC/USDT" else 0.5]])


def _position(db: psycopg.Connection, position_id: str, account: str, symbol: str, *,
              pnl: float, fees: float, pnl_usdt: float | None, closed_minute: int,
              intent_id: str | None = None) -> None:
    """A closed position with the risk check, orders and fills that opened and closed it."""
    opened, closed = _minute(0), _minute(closed_minute)
    check_id = f"chk-{position_id}"
    db.execute(
        "INSERT INTO positions (position_id, account, symbol, direction, quantity, entry_price,"
        " stop_loss, take_profit, opened_at, entry_notional_usdt, equity_at_entry_usdt, status,"
        " closed_at, exit_price, exit_reason, realized_pnl, fees, realized_pnl_usdt)"
        " VALUES (%s, %s, %s, 'long', 10, 1, 0.9, 1.2, %s, 10, 1000, 'closed', %s, 1.1,"
        " 'take_profit', %s, %s, %s)",
        (position_id, account, symbol, opened, closed, pnl, fees, pnl_usdt))
    db.execute(
        "INSERT INTO risk_checks (check_id, account, time, symbol, position_id, approved, reasons,"
        " quantity, notional_usdt, equity_usdt, risk_usdt, intent_id)"
        " VALUES (%s, %s, %s, %s, %s, true, '{}', 10, 10, 1000, 1, %s)",
        (check_id, account, opened, symbol, position_id, intent_id))
    for purpose, side, time in (("entry", "buy", opened), ("exit", "sell", closed)):
        order_id = f"ord-{position_id}-{purpose}"
        db.execute(
            "INSERT INTO orders (order_id, account, time, symbol, side, quantity, purpose, check_id,"
            " position_id) VALUES (%s, %s, %s, %s, %s, 10, %s, %s, %s)",
            (order_id, account, time, symbol, side, purpose, check_id, position_id))
        db.execute(
            "INSERT INTO fills (fill_id, order_id, account, time, symbol, side, quantity, price,"
            " fee, fee_asset) VALUES (%s, %s, %s, %s, %s, %s, 10, 1, %s, %s)",
            (f"fill-{order_id}", order_id, account, time, symbol, side, fees / 2,
             symbol.split("/")[1]))


def _decision(db: psycopg.Connection, decision_id: str, confidence: float, states: list[str]) -> None:
    db.execute(
        "INSERT INTO llm_decisions (decision_id, request_id, account, source, mode, symbol,"
        " market_time, expires_at, action, confidence, decision)"
        " VALUES (%s, 'req-1', 'llm:claude', 'claude', 'auto', 'XRP/BTC', %s, %s, 'LONG', %s, '{}')",
        (decision_id, _minute(0), _minute(60), confidence))
    for seq, state in enumerate(states):
        db.execute(
            "INSERT INTO decision_events (decision_id, seq, source, target, at, actor, reason)"
            " VALUES (%s, %s, %s, %s, %s, 'test', 'test')",
            (decision_id, seq, states[seq - 1] if seq else None, state, _minute(seq)))


def _llm_call(db: psycopg.Connection, call_id: str, latency_ms: float, cost_usd: float) -> None:
    db.execute(
        "INSERT INTO llm_calls (call_id, request_id, time, model_name, provider, model_id, symbol,"
        " purpose, prompt_hash, system_prompt, user_prompt, outcome, decision, http_attempts,"
        " latency_ms, input_tokens, output_tokens, cost_usd, from_cache)"
        " VALUES (%s, 'req-1', %s, 'claude', 'anthropic', 'claude-x', 'XRP/BTC', 'ask', 'h', 's',"
        " 'u', 'decided', '{}', 1, %s, 100, 20, %s, false)",
        (call_id, _minute(0), latency_ms, cost_usd))


@pytest.fixture
def trading_history(db: psycopg.Connection) -> psycopg.Connection:
    """Two days of a small trading history: candles with a hole, three closed positions on two
    accounts (one BTC-quoted), a model's two decisions and calls, equity snapshots."""
    _candles(db)
    _position(db, "p-win", "paper", "XRP/USDT", pnl=2.0, fees=0.1, pnl_usdt=2.0, closed_minute=3)
    _position(db, "p-loss", "paper", "XRP/USDT", pnl=-1.0, fees=0.1, pnl_usdt=-1.0, closed_minute=6)
    _decision(db, "d-traded", 0.75, ["generated", "approved", "executed", "open", "closed"])
    _decision(db, "d-refused", 0.6, ["generated", "rejected"])
    # Closed at minute 8, BTC-quoted and not valued by the executor: the BTC/USDT close values it.
    _position(db, "p-btc", "llm:claude", "XRP/BTC", pnl=0.0001, fees=0.00001, pnl_usdt=None,
              closed_minute=8, intent_id="d-traded")
    _llm_call(db, "call-1", 100.0, 0.01)
    _llm_call(db, "call-2", 300.0, 0.03)
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO portfolio_snapshots (account, time, btc, usdt, xrp, prices, equity_usdt)"
            " VALUES ('paper', %s, 0, %s, 0, '{}', %s)",
            [(at, equity, equity) for at, equity in ((DAY, 1000.0), (DAY + timedelta(hours=23), 1010.0),
                                                     (DAY + timedelta(days=1, hours=12), 1005.0))])
    return db


@pytest.fixture
def resources(database_url: str) -> Iterator[dict[str, object]]:
    """The marts' resources on the test database."""
    yield {"postgres": PostgresResource(database_url=database_url),
           "dbt": DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=dbt_executable())}


def _rows(db: psycopg.Connection, sql: str) -> list[tuple]:
    return db.execute(sql.format(schema=MARTS_SCHEMA)).fetchall()


def test_the_marts_give_the_figures_of_the_history(trading_history: psycopg.Connection,
                                                   resources: dict[str, object]) -> None:
    """Every mart, built by ``dbt build`` through Dagster, holds the figures worked out by hand;
    every dbt test passes as an asset check."""
    db = trading_history
    result = dg.materialize([analytics_marts], resources=resources)
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(check.passed for check in checks), [
        check.check_name for check in checks if not check.passed]
    # The dbt tests are checks: fills -> orders -> risk checks on the staging views, the sources'
    # keys and accepted values on the executor's tables.
    checked = {(check.asset_key.to_user_string(), check.check_name) for check in checks}
    assert {("staging/stg_fills", "relationships_stg_fills_order_id__order_id__ref_stg_orders_"),
            ("staging/stg_orders", "relationships_stg_orders_check_id__check_id__source_triplegain_risk_checks_"),
            ("triplegain/fills", "source_unique_triplegain_fills_fill_id"),
            ("triplegain/orders", "source_accepted_values_triplegain_orders_side__buy__sell")} <= checked

    assert _rows(db, "SELECT account, account_kind, symbol, trades, wins, win_rate, expectancy_usdt,"
                     " realized_pnl_usdt, round(fees_usdt::numeric, 6)::float8"
                     " FROM {schema}.trade_stats_by_account_pair ORDER BY account") == [
        ("llm:claude", "model", "XRP/BTC", 1, 1, 1.0, pytest.approx(5.0), pytest.approx(5.0), 0.5),
        ("paper", "technical", "XRP/USDT", 2, 1, 0.5, pytest.approx(0.5), pytest.approx(1.0), 0.2),
    ]
    assert _rows(db, "SELECT account, symbol, fee_asset, fills, orders, buys, sells, volume_quote,"
                     " round(fees::numeric, 8)::float8, fills_of_refused_checks"
                     " FROM {schema}.execution_by_account_pair ORDER BY account") == [
        ("llm:claude", "XRP/BTC", "BTC", 2, 2, 1, 1, 20.0, 0.00001, 0),
        ("paper", "XRP/USDT", "USDT", 4, 4, 2, 2, 40.0, 0.2, 0),
    ]
    assert _rows(db, "SELECT symbol, trades, accounts FROM {schema}.trade_stats_by_pair ORDER BY symbol") == [
        ("XRP/BTC", 1, 1), ("XRP/USDT", 2, 1)]
    assert _rows(db, "SELECT origin, account, day, pnl_usdt FROM {schema}.account_daily_pnl ORDER BY day") == [
        ("paper", "paper", DAY.date(), 10.0), ("paper", "paper", (DAY + timedelta(days=1)).date(), -5.0)]
    assert _rows(db, "SELECT model, bucket, trades, hit_rate, overconfidence"
                     " FROM {schema}.llm_confidence_calibration") == [
        ("claude", 7, 1, 1.0, pytest.approx(-0.25))]
    assert _rows(db, "SELECT model_name, calls, decided, mean_latency_ms, p50_latency_ms, cost_usd"
                     " FROM {schema}.llm_model_daily_usage") == [
        ("claude", 2, 2, 200.0, 200.0, pytest.approx(0.04))]
    assert _rows(db, "SELECT model, generated, approved, rejected, executed, opened, closed"
                     " FROM {schema}.decision_funnel") == [("claude", 2, 1, 1, 1, 1, 1)]
    assert _rows(db, "SELECT symbol, after_minute, missing_minutes FROM {schema}.candle_gaps") == [
        ("BTC/USDT", _minute(3), 2)]
    assert _rows(db, "SELECT symbol, candles, window_minutes, quiet_minutes, gaps, missing_minutes,"
                     " coverage FROM {schema}.candle_coverage ORDER BY symbol") == [
        ("BTC/USDT", 8, 10, 0, 1, 2, 0.8), ("XRP/USDT", 3, 3, 1, 0, 0, 1.0)]


def test_a_broken_row_fails_its_check(trading_history: psycopg.Connection,
                                      resources: dict[str, object]) -> None:
    """A position whose fees are negative (nothing in the schema forbids it) fails the fees
    range test of the per-account mart: a failed asset check naming it, the run failed."""
    trading_history.execute("UPDATE positions SET fees = -0.5 WHERE position_id = 'p-loss'")
    result = dg.materialize([analytics_marts], resources=resources, raise_on_error=False)
    assert not result.success
    failed = [check.check_name for check in result.get_asset_check_evaluations() if not check.passed]
    assert any("fees_usdt" in name and "trade_stats_by_account_pair" in name for name in failed), failed
