"""What Dagster reads of the streamer's tables to observe and check them.

Dagster does not write ``candles`` and ``trades`` (the streamer and the backfill do): it observes
their coverage per symbol (plain aggregates, cheap enough every few minutes on a year of
candles; the holes themselves are the ``candle_gaps`` dbt mart) and checks the rows of a recent
window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from triplegain_core.model.market import TIMEFRAME_US


@dataclass(frozen=True, slots=True)
class CandleCoverage:
    """One symbol's candles of one timeframe."""

    symbol: str
    candles: int
    first_open: datetime
    last_open: datetime
    missing: int
    """Candles absent between the first and the last (quiet minutes are candles: true holes)."""


@dataclass(frozen=True, slots=True)
class TradeCoverage:
    """One symbol's public trades."""

    symbol: str
    trades: int
    first_time: datetime
    last_time: datetime
    first_id: int
    last_id: int


def candle_coverage(conn: psycopg.Connection, timeframe: str) -> list[CandleCoverage]:
    """Each symbol's ``timeframe`` candles, by symbol."""
    rows = conn.execute(
        "SELECT symbol, count(*), min(open_time), max(open_time) FROM candles WHERE timeframe = %s"
        " GROUP BY symbol ORDER BY symbol", (timeframe,)).fetchall()
    span = timedelta(microseconds=TIMEFRAME_US[timeframe])
    return [CandleCoverage(symbol, count, first, last, (last - first) // span + 1 - count)
            for symbol, count, first, last in rows]


def trade_coverage(conn: psycopg.Connection) -> list[TradeCoverage]:
    """Each symbol's stored trades, by symbol."""
    rows = conn.execute(
        "SELECT symbol, count(*), min(ts), max(ts), min(trade_id), max(trade_id) FROM trades"
        " GROUP BY symbol ORDER BY symbol").fetchall()
    return [TradeCoverage(*row) for row in rows]


def recent_candle_rows(conn: psycopg.Connection, timeframe: str, days: float) -> list[tuple[Any, ...]]:
    """The ``timeframe`` candles within ``days`` of the latest one (symbol, open_time, open, high,
    low, close, volume, trade_count), by symbol and time."""
    return conn.execute(
        "SELECT symbol, open_time, open, high, low, close, volume, trade_count FROM candles"
        " WHERE timeframe = %(tf)s AND open_time >= (SELECT max(open_time) FROM candles WHERE timeframe = %(tf)s)"
        " - %(days)s * interval '1 day' ORDER BY symbol, open_time", {"tf": timeframe, "days": days}).fetchall()


def recent_trade_rows(conn: psycopg.Connection, days: float) -> list[tuple[Any, ...]]:
    """The trades within ``days`` of the latest one (symbol, ts, trade_id, price, qty, side), by
    symbol, time and id."""
    return conn.execute(
        "SELECT symbol, ts, trade_id, price, qty, side FROM trades"
        " WHERE ts >= (SELECT max(ts) FROM trades) - %(days)s * interval '1 day'"
        " ORDER BY symbol, ts, trade_id", {"days": days}).fetchall()

