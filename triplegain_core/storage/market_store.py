"""Batched, idempotent writes and reads of trades, candles and top-of-book snapshots.

Every write goes through a binary COPY into a session-local staging table, then one
``INSERT ... SELECT ... ON CONFLICT`` on the natural key, so replaying a batch (a restart, a
replay, REST gap repair overlapping the live stream) never duplicates a row:

- candles upsert on ``(symbol, timeframe, open_time)``: a later version of a bucket (a late
  trade's correction, the final version of a forming candle) replaces the stored one; an
  identical version writes nothing;
- trades insert-or-ignore on ``(symbol, ts, trade_id)``;
- book snapshots insert-or-ignore on ``(symbol, time)``.

Times cross the COPY as integer epoch microseconds and become ``timestamptz`` in SQL, exactly.
The same queries run on plain PostgreSQL and on TimescaleDB hypertables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import pandas as pd
import psycopg

from triplegain_core.model.market import BookLevel, Candle, Side, Trade, datetime_to_us
from triplegain_core.model.quotes import BookSnapshot

_CANDLE_COLUMNS = "symbol, timeframe, open_time, open, high, low, close, volume, trade_count"
_TRADE_COLUMNS = "symbol, ts, trade_id, price, qty, side, ord_type"
_BOOK_COLUMNS = "symbol, time, depth, bid_price, bid_qty, ask_price, ask_qty"
_US_TO_TIMESTAMPTZ = "timestamptz 'epoch' + {} * interval '1 microsecond'"
MARKET_TABLES = ("candles", "trades", "book_snapshots")

# Staging tables live as long as the session; ON COMMIT DELETE ROWS empties them per batch.
_STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS candles_stage (symbol text, timeframe text,"
    " open_time_us bigint, open float8, high float8, low float8, close float8, volume float8,"
    " trade_count int8) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS trades_stage (symbol text, ts_us bigint, trade_id int8,"
    " price float8, qty float8, side text, ord_type text) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS book_stage (symbol text, time_us bigint, depth int8,"
    " bid_price float8[], bid_qty float8[], ask_price float8[], ask_qty float8[])"
    " ON COMMIT DELETE ROWS"
)
# Integers cross as int8 whatever the column: psycopg's binary int4 would wrap silently, while
# PostgreSQL's cast to integer refuses an out-of-range value.
_CANDLE_TYPES = ["text", "text", "int8", "float8", "float8", "float8", "float8", "float8", "int8"]
_TRADE_TYPES = ["text", "int8", "int8", "float8", "float8", "text", "text"]
_BOOK_TYPES = ["text", "int8", "int8", "float8[]", "float8[]", "float8[]", "float8[]"]

_UPSERT_CANDLES = (
    f"INSERT INTO candles ({_CANDLE_COLUMNS})"
    " SELECT symbol, timeframe, " + _US_TO_TIMESTAMPTZ.format("open_time_us") + ","
    " open, high, low, close, volume, trade_count FROM candles_stage"
    " ON CONFLICT (symbol, timeframe, open_time) DO UPDATE SET"
    " open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,"
    " volume = EXCLUDED.volume, trade_count = EXCLUDED.trade_count"
    " WHERE (candles.open, candles.high, candles.low, candles.close, candles.volume,"
    " candles.trade_count) IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low,"
    " EXCLUDED.close, EXCLUDED.volume, EXCLUDED.trade_count)"
)
# Duplicates inside one batch are fine with DO NOTHING: the second simply conflicts.
_INSERT_TRADES = (
    f"INSERT INTO trades ({_TRADE_COLUMNS})"
    " SELECT symbol, " + _US_TO_TIMESTAMPTZ.format("ts_us") + ","
    " trade_id, price, qty, side, ord_type FROM trades_stage ON CONFLICT DO NOTHING"
)
_INSERT_BOOKS = (
    f"INSERT INTO book_snapshots ({_BOOK_COLUMNS})"
    " SELECT symbol, " + _US_TO_TIMESTAMPTZ.format("time_us") + ","
    " depth, bid_price, bid_qty, ask_price, ask_qty FROM book_stage ON CONFLICT DO NOTHING"
)


class MarketStore:
    """Market data in PostgreSQL: batched idempotent writes, and the reads that backfills,
    Dagster assets and restart gap repair need.

    ``synchronous_commit=False`` lets a batch's commit return before its WAL reaches disk:
    faster, and a database crash can then lose the last fraction of a second of batches (never
    corrupt anything); gap repair from :meth:`last_trades` refills them. Default: durable.
    """

    def __init__(self, conn: psycopg.Connection, *, synchronous_commit: bool = True) -> None:
        self._conn = conn
        self._synchronous_commit = synchronous_commit
        self._staged = False

    # --- writes -------------------------------------------------------------------------------

    def write_batch(
        self,
        trades: Sequence[Trade] = (),
        candles: Sequence[Candle] = (),
        books: Sequence[BookSnapshot] = (),
    ) -> int:
        """Write trades, candles and book snapshots in one transaction (all or nothing);
        returns the number of rows sent (candles counted once per key)."""
        latest = _latest_candles(candles)
        if not (trades or latest or books):
            return 0
        statements = [] if self._synchronous_commit else ["SET LOCAL synchronous_commit = off"]
        with self._conn.transaction(), self._conn.cursor() as cur:
            if not self._staged:
                cur.execute(_STAGING_DDL)
            if trades:
                self._copy(cur, "trades_stage", _TRADE_TYPES, (
                    (t.symbol, t.ts_us, t.trade_id, t.price, t.qty, t.side.value, t.ord_type)
                    for t in trades))
                statements.append(_INSERT_TRADES)
            if latest:
                self._copy(cur, "candles_stage", _CANDLE_TYPES, (
                    (c.symbol, c.timeframe, c.open_time_us, c.open, c.high, c.low, c.close,
                     c.volume, c.trade_count) for c in latest))
                statements.append(_UPSERT_CANDLES)
            if books:
                self._copy(cur, "book_stage", _BOOK_TYPES, (
                    (b.symbol, b.ts_us, b.depth, [p for p, _ in b.bids], [q for _, q in b.bids],
                     [p for p, _ in b.asks], [q for _, q in b.asks]) for b in books))
                statements.append(_INSERT_BOOKS)
            cur.execute(";".join(statements))  # one round trip for every upsert of the batch
        # Known to exist only once committed for good (an outer transaction could still undo it).
        self._staged = self._conn.autocommit
        return len(trades) + len(latest) + len(books)

    def write_candles(self, candles: Sequence[Candle]) -> int:
        """Upsert candles (the last version of a key in the batch wins); returns rows sent."""
        return self.write_batch(candles=candles)

    def write_trades(self, trades: Sequence[Trade]) -> int:
        """Insert trades not yet stored; returns the number of rows sent."""
        return self.write_batch(trades=trades)

    def write_features(self, rows: Iterable[tuple[str, str, datetime, str]]) -> int:
        """Upsert indicator features, (symbol, timeframe, open_time, features JSON) per row, in one
        transaction: COPY into a staging table, then one upsert on the natural key. Returns the
        rows sent."""
        sent = 0
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS indicator_features_stage"
                " (LIKE indicator_features INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            with cur.copy(
                "COPY indicator_features_stage (symbol, timeframe, open_time, features) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
                    sent += 1
            cur.execute(
                "INSERT INTO indicator_features (symbol, timeframe, open_time, features)"
                " SELECT symbol, timeframe, open_time, features FROM indicator_features_stage"
                " ON CONFLICT (symbol, timeframe, open_time) DO UPDATE SET features = EXCLUDED.features"
            )
        return sent

    def write_book_snapshots(self, books: Sequence[BookSnapshot]) -> int:
        """Insert book snapshots not yet stored; returns the number of rows sent."""
        return self.write_batch(books=books)

    @staticmethod
    def _copy(cur: psycopg.Cursor, table: str, types: list[str], rows: Iterable[tuple[Any, ...]]) -> None:
        with cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)

    # --- reads --------------------------------------------------------------------------------

    def read_candles(
        self,
        symbol: str | None = None,
        timeframe: str = "1m",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Candles ordered by symbol and open time, as a DataFrame (open_time is UTC);
        ``start`` inclusive, ``end`` exclusive, both on the open time."""
        where, params = _candle_filter(symbol, timeframe, start, end)
        with self._conn.cursor() as cur:
            cur.execute(
                f"SELECT {_CANDLE_COLUMNS} FROM candles WHERE {where} ORDER BY symbol, open_time",
                params,
            )
            rows = cur.fetchall()
        frame = pd.DataFrame(rows, columns=[c.strip() for c in _CANDLE_COLUMNS.split(",")])
        frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)
        return frame

    def candles(
        self,
        symbol: str,
        timeframe: str = "1m",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Candle]:
        """``symbol``'s candles of ``timeframe`` opening in ``[start, end)``, oldest first."""
        where, params = _candle_filter(symbol, timeframe, start, end)
        rows = self._conn.execute(
            f"SELECT {_CANDLE_COLUMNS} FROM candles WHERE {where} ORDER BY open_time", params
        ).fetchall()
        return [_candle(row) for row in rows]

    def trades(
        self, symbol: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[Trade]:
        """``symbol``'s stored trades in ``[start, end)``, in (time, trade id) order."""
        clauses: list[str] = ["symbol = %s"]
        params: list[object] = [symbol]
        _add_range(clauses, params, "ts", start, end)
        rows = self._conn.execute(
            f"SELECT {_TRADE_COLUMNS} FROM trades WHERE {' AND '.join(clauses)}"
            " ORDER BY ts, trade_id", params,
        ).fetchall()
        return [_trade(row) for row in rows]

    def trades_around(self, symbol: str, start: datetime, end: datetime) -> list[Trade]:
        """``symbol``'s last stored trade before ``start`` and its first at or after ``end``
        (those that exist, in time order): the neighbours of a span being rebuilt."""
        rows = self._conn.execute(
            f"(SELECT {_TRADE_COLUMNS} FROM trades WHERE symbol = %(s)s AND ts < %(start)s"
            " ORDER BY ts DESC, trade_id DESC LIMIT 1) UNION ALL"
            f" (SELECT {_TRADE_COLUMNS} FROM trades WHERE symbol = %(s)s AND ts >= %(end)s"
            " ORDER BY ts, trade_id LIMIT 1)",
            {"s": symbol, "start": start, "end": end},
        ).fetchall()
        return sorted((_trade(row) for row in rows), key=lambda t: (t.ts_us, t.trade_id))

    def book_snapshots(
        self, symbol: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[BookSnapshot]:
        """``symbol``'s stored book snapshots in ``[start, end)``, oldest first."""
        clauses: list[str] = ["symbol = %s"]
        params: list[object] = [symbol]
        _add_range(clauses, params, "time", start, end)
        rows = self._conn.execute(
            f"SELECT {_BOOK_COLUMNS} FROM book_snapshots WHERE {' AND '.join(clauses)}"
            " ORDER BY time", params,
        ).fetchall()
        return [
            BookSnapshot(symbol, datetime_to_us(time), depth,
                         tuple(BookLevel(p, q) for p, q in zip(bid_p, bid_q, strict=True)),
                         tuple(BookLevel(p, q) for p, q in zip(ask_p, ask_q, strict=True)))
            for symbol, time, depth, bid_p, bid_q, ask_p, ask_q in rows
        ]

    def last_trades(self, symbols: Sequence[str]) -> dict[str, Trade]:
        """The newest stored trade of each symbol (absent: none stored), for restart gap
        repair: its time is where a backfill resumes, its id shows a gap in the sequence."""
        rows = self._conn.execute(
            f"SELECT t.* FROM unnest(%s::text[]) AS s(symbol) CROSS JOIN LATERAL ("
            f" SELECT {_TRADE_COLUMNS} FROM trades WHERE trades.symbol = s.symbol"
            " ORDER BY ts DESC, trade_id DESC LIMIT 1) AS t",
            (list(symbols),),
        ).fetchall()
        return {row[0]: _trade(row) for row in rows}

    def last_candles(self, symbols: Sequence[str], timeframe: str = "1m") -> dict[str, Candle]:
        """The newest stored candle of ``timeframe`` per symbol (absent: none stored)."""
        rows = self._conn.execute(
            f"SELECT c.* FROM unnest(%s::text[]) AS s(symbol) CROSS JOIN LATERAL ("
            f" SELECT {_CANDLE_COLUMNS} FROM candles"
            " WHERE candles.symbol = s.symbol AND timeframe = %s"
            " ORDER BY open_time DESC LIMIT 1) AS c",
            (list(symbols), timeframe),
        ).fetchall()
        return {row[0]: _candle(row) for row in rows}

    def candle_days(self, timeframe: str = "1m") -> list[tuple[date, str]]:
        """Every (UTC day, symbol) with a stored candle of ``timeframe``, in order."""
        rows = self._conn.execute(
            "SELECT DISTINCT (open_time AT TIME ZONE 'UTC')::date, symbol FROM candles WHERE timeframe = %s"
            " ORDER BY 1, 2", (timeframe,)).fetchall()
        return [(day, symbol) for day, symbol in rows]

    def count_rows(self, table: str) -> int:
        """Row count of a market-data table (``candles``, ``trades`` or ``book_snapshots``)."""
        if table not in MARKET_TABLES:
            raise ValueError(f"not a market-data table: {table}")
        row = self._conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None, "a SELECT count(*) returns one row"
        count: int = row[0]
        return count


def _latest_candles(candles: Sequence[Candle]) -> list[Candle]:
    # One row per key per statement (ON CONFLICT DO UPDATE refuses two): the newest wins.
    latest: dict[tuple[str, str, int], Candle] = {}
    for candle in candles:
        latest[(candle.symbol, candle.timeframe, candle.open_time_us)] = candle
    return list(latest.values())


def _add_range(clauses: list[str], params: list[object], column: str,
               start: datetime | None, end: datetime | None) -> None:
    if start is not None:
        clauses.append(f"{column} >= %s")
        params.append(start)
    if end is not None:
        clauses.append(f"{column} < %s")
        params.append(end)


def _candle_filter(symbol: str | None, timeframe: str, start: datetime | None,
                   end: datetime | None) -> tuple[str, list[object]]:
    clauses: list[str] = ["timeframe = %s"]
    params: list[object] = [timeframe]
    if symbol is not None:
        clauses.append("symbol = %s")
        params.append(symbol)
    _add_range(clauses, params, "open_time", start, end)
    return " AND ".join(clauses), params


def _candle(row: tuple[Any, ...]) -> Candle:
    symbol, timeframe, open_time, open_, high, low, close, volume, trade_count = row
    return Candle(symbol, timeframe, datetime_to_us(open_time), open_, high, low, close, volume,
                  trade_count)


def _trade(row: tuple[Any, ...]) -> Trade:
    symbol, ts, trade_id, price, qty, side, ord_type = row
    return Trade(symbol, trade_id, datetime_to_us(ts), price, qty, Side(side), ord_type)
