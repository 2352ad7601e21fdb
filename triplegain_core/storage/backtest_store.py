"""Backtest runs in PostgreSQL: each run's definition, scorecards, trades and hourly equity."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict

from triplegain_core.backtest.engine import BacktestResult
from triplegain_core.backtest.history import (
    BacktestHistory,
    BacktestSource,
    history_from_candles,
    history_from_files,
)
from triplegain_core.backtest.leaderboard import Scorecard
from triplegain_core.errors import UserMistake
from triplegain_core.model.market import US_PER_MINUTE, datetime_to_us, us_to_datetime
from triplegain_core.storage.market_store import MarketStore

# One stored equity point an hour (and the last): the scorecards used every minute.
EQUITY_EVERY_US = 60 * US_PER_MINUTE


class StoredRun(BaseModel):
    """A stored backtest run: what defines it and the hashes it gave."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    created_at: datetime
    source: BacktestSource
    config: dict[str, Any]
    config_hash: str
    data_hash: str
    trades_hash: str
    candles: int
    reproduces: str | None


class UnknownRun(UserMistake):
    """A run id that is not stored."""


class BacktestStore:
    """Records backtest runs and reads them back."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def record(self, result: BacktestResult, card: Scorecard, source: BacktestSource,
               reproduces: str | None = None, robustness: Mapping[str, object] | None = None) -> str:
        """Store a run, its scorecard and its robustness figures in one transaction; its new run id."""
        run_id = f"bt-{uuid.uuid4().hex[:12]}"
        history = result.history
        rows = card.rows
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(
                "INSERT INTO backtest_runs (run_id, source, config, config_hash, data_hash, trades_hash, candles,"
                " first_candle, last_candle, seconds, reproduces, robustness)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (run_id, Jsonb(source.model_dump(mode="json")), Jsonb(dict(result.config)), result.config_hash,
                 history.data_hash, result.trades_hash, len(history.candles), us_to_datetime(history.start_us),
                 us_to_datetime(history.end_us), result.seconds, reproduces, Jsonb(dict(robustness or {}))))
            cur.executemany(
                "INSERT INTO backtest_accounts (run_id, account, kind, rank, return_pct, max_drawdown_pct, sharpe,"
                " sortino, trades, win_rate, expectancy_usdt, exposure, fees_usdt, end_equity_usdt)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(run_id, r.account, r.kind.value, r.rank, r.return_pct, r.max_drawdown_pct, r.sharpe, r.sortino,
                  r.trades, r.win_rate, r.expectancy_usdt, r.exposure, r.fees_usdt, r.end_equity_usdt) for r in rows])
            cur.executemany(
                "INSERT INTO backtest_regimes (run_id, account, regime, trades, win_rate, expectancy_usdt, pnl_usdt)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(run_id, r.account, r.regime, r.trades, r.win_rate, r.expectancy_usdt, r.pnl_usdt)
                 for r in card.by_regime])
            cur.executemany(
                "INSERT INTO backtest_trades (run_id, account, position_id, symbol, direction, quantity, opened_at,"
                " entry_price, closed_at, exit_price, exit_reason, realized_pnl, realized_pnl_usdt, fees)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(run_id, p.account, p.position_id, p.symbol, p.direction.value, p.quantity, p.opened_at,
                  p.entry_price, p.closed_at, p.exit_price, p.exit_reason.value if p.exit_reason else None,
                  p.realized_pnl, p.realized_pnl_usdt, p.fees)
                 for account in result.accounts for p in account.trail.positions.values()])
            for account in result.accounts:
                cur.executemany(
                    "INSERT INTO backtest_equity (run_id, account, time, equity_usdt) VALUES (%s, %s, %s, %s)",
                    [(run_id, account.name, us_to_datetime(t), e) for t, e in _hourly(account.trail.curve.points())])
        return run_id

    def run(self, run_id: str) -> StoredRun:
        """The stored run ``run_id``; :class:`UnknownRun` naming the latest ones when there is none."""
        with self._conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT run_id, created_at, source, config, config_hash, data_hash, trades_hash, candles, reproduces"
                " FROM backtest_runs WHERE run_id = %s", (run_id,)).fetchone()
        if row is None:
            latest = [r[0] for r in self._conn.execute(
                "SELECT run_id FROM backtest_runs ORDER BY created_at DESC LIMIT 3").fetchall()]
            raise UnknownRun(f"--rerun {run_id}: no such backtest run; "
                             + (f"the latest: {', '.join(latest)}" if latest else "no run is stored yet"))
        return StoredRun.model_validate(row)

    def leaderboard(self, run_id: str) -> list[tuple[Any, ...]]:
        """The stored leaderboard of ``run_id``: (rank, account, kind, return %, drawdown %, trades), by rank."""
        return self._conn.execute(
            "SELECT rank, account, kind, return_pct, max_drawdown_pct, trades FROM backtest_accounts"
            " WHERE run_id = %s ORDER BY rank", (run_id,)).fetchall()


def load_history(conn: psycopg.Connection | None, source: BacktestSource, now_us: int) -> BacktestHistory:
    """The candles ``source`` names: its files, or the database's (through ``conn``) 1m candles
    closed by ``now_us`` (the candle still open is rewritten by the streamer until it closes:
    not history yet)."""
    if source.kind == "files":
        return history_from_files(source.files)
    if conn is None:
        raise ValueError("the database's candles need a connection")
    store = MarketStore(conn)
    start = source.start
    if start is not None and source.warmup_minutes:
        start = us_to_datetime(datetime_to_us(start) - source.warmup_minutes * US_PER_MINUTE)
    candles = [c for symbol in source.symbols for c in store.candles(symbol, "1m", start, source.end)
               if c.close_time_us <= now_us]
    return history_from_candles(candles, source.symbols)


def _hourly(points: Any) -> list[tuple[int, float]]:
    """The first point of each hour, and the last point."""
    kept: list[tuple[int, float]] = []
    last: tuple[int, float] | None = None
    hour = None
    for point in points:
        last = point
        if point[0] // EQUITY_EVERY_US != hour:
            hour = point[0] // EQUITY_EVERY_US
            kept.append(point)
    if last is not None and kept[-1] != last:
        kept.append(last)
    return kept
