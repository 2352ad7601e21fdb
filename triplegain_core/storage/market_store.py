"""Batched, idempotent writes and reads of trades and candles."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd
import psycopg

from triplegain_core.market import Candle, Trade, us_to_datetime

_CANDLE_COLUMNS = "symbol, timeframe, open_time, open, high, low, close, volume, trade_count"
_TRADE_COLUMNS = "symbol, ts, trade_id, price, qty, side, ord_type"


class MarketStore:
    """Writes market data through COPY into a staging table, then one upsert per batch.

    Candles upsert on (symbol, timeframe, open_time): a later, fuller version of a bucket
    replaces the earlier one. Trades insert-or-ignore on (symbol, ts, trade_id).
    """

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def write_candles(self, candles: Sequence[Candle]) -> int:
        """Upsert candles; returns the number of rows sent."""
        if not candles:
            return 0
        latest: dict[tuple[str, str, int], Candle] = {}
        for candle in candles:  # one row per key per statement, the newest wins
            latest[(candle.symbol, candle.timeframe, candle.open_time_us)] = candle
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS candles_stage"
                " (LIKE candles INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            with cur.copy(f"COPY candles_stage ({_CANDLE_COLUMNS}) FROM STDIN") as copy:
                for c in latest.values():
                    copy.write_row(
                        (c.symbol, c.timeframe, us_to_datetime(c.open_time_us), c.open, c.high,
                         c.low, c.close, c.volume, c.trade_count)
                    )
            cur.execute(
                f"INSERT INTO candles ({_CANDLE_COLUMNS}) SELECT {_CANDLE_COLUMNS} FROM candles_stage"
                " ON CONFLICT (symbol, timeframe, open_time) DO UPDATE SET"
                " open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,"
                " close = EXCLUDED.close, volume = EXCLUDED.volume, trade_count = EXCLUDED.trade_count"
            )
        return len(latest)

    def write_trades(self, trades: Sequence[Trade]) -> int:
        """Insert trades not yet stored; returns the number of rows sent."""
        if not trades:
            return 0
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS trades_stage"
                " (LIKE trades INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            with cur.copy(f"COPY trades_stage ({_TRADE_COLUMNS}) FROM STDIN") as copy:
                for t in trades:
                    copy.write_row(
                        (t.symbol, us_to_datetime(t.ts_us), t.trade_id, t.price, t.qty,
                         t.side.value, t.ord_type)
                    )
            cur.execute(
                f"INSERT INTO trades ({_TRADE_COLUMNS}) SELECT DISTINCT ON (symbol, ts, trade_id)"
                f" {_TRADE_COLUMNS} FROM trades_stage ON CONFLICT DO NOTHING"
            )
        return len(trades)

    def read_candles(
        self,
        symbol: str | None = None,
        timeframe: str = "1m",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Candles ordered by symbol and open time, as a DataFrame (open_time is UTC)."""
        clauses, params = ["timeframe = %s"], [timeframe]
        if symbol is not None:
            clauses.append("symbol = %s")
            params.append(symbol)
        if start is not None:
            clauses.append("open_time >= %s")
            params.append(start)
        if end is not None:
            clauses.append("open_time < %s")
            params.append(end)
        with self._conn.cursor() as cur:
            cur.execute(
                f"SELECT {_CANDLE_COLUMNS} FROM candles WHERE {' AND '.join(clauses)}"
                " ORDER BY symbol, open_time",
                params,
            )
            rows = cur.fetchall()
        frame = pd.DataFrame(rows, columns=[c.strip() for c in _CANDLE_COLUMNS.split(",")])
        frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)
        return frame

    def count_rows(self, table: str) -> int:
        """Row count of a market-data table (``candles`` or ``trades``)."""
        if table not in ("candles", "trades"):
            raise ValueError(f"not a market-data table: {table}")
        return self._conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
