"""Repairing a hole in the stored trades and 1m candles from the exchange's REST history.

The edge around :mod:`triplegain_core.gap_repair`: fetch the trades of the missed minutes
over REST (ccxt, through :class:`RestMarketData`), read the stored trades of every touched
bucket (up to the day of a ``1d`` candle), write the fetched trades (insert-or-ignore) and
upsert the candles of every timeframe rebuilt from the union. Running it twice changes
nothing; afterwards the stored candles are those of an uninterrupted stream.

Call it once the minute holding the resumed stream has closed and its live candle has been
written: the repaired candle of that minute then replaces the partial live one, rather than
being overwritten by it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from triplegain_core.exchange_rest import RestMarketData
from triplegain_core.gap_repair import (
    MissedInterval,
    merge_trades,
    repair_span,
    repaired_candles,
)
from triplegain_core.market import TIMEFRAMES, Side, Trade, datetime_to_us, us_to_datetime
from triplegain_core.storage.market_store import MarketStore

log = logging.getLogger(__name__)

# MarketStore has no trade reader yet: the repair reads the stored trades of its minutes here.
_STORED_TRADES_SQL = """
SELECT ts, trade_id, price, qty, side, ord_type FROM trades
WHERE symbol = %s AND ts >= %s AND ts < %s ORDER BY ts, trade_id
"""


@dataclass(frozen=True, slots=True)
class GapRepairReport:
    """What one repair did."""

    interval: MissedInterval
    pages: int
    fetched_trades: int
    new_trades: int
    candles_written: int
    rest_retries: int


def stored_trades(conn: psycopg.Connection, symbol: str, start_us: int, end_us: int
                  ) -> list[Trade]:
    """The stored trades of ``symbol`` with ``start_us <= ts < end_us``, in time order."""
    rows = conn.execute(_STORED_TRADES_SQL,
                        (symbol, us_to_datetime(start_us), us_to_datetime(end_us))).fetchall()
    return [Trade(symbol, trade_id, datetime_to_us(ts), price, qty, Side(side), ord_type)
            for ts, trade_id, price, qty, side, ord_type in rows]


class GapRepairer:
    """Repairs missed intervals of the live stream from REST into the store on ``conn``."""

    def __init__(self, rest: RestMarketData, conn: psycopg.Connection,
                 timeframes: Sequence[str] = TIMEFRAMES) -> None:
        self._rest = rest
        self._conn = conn
        self._store = MarketStore(conn)
        self.timeframes = tuple(timeframes)

    async def repair(self, interval: MissedInterval) -> GapRepairReport:
        """Fetch, merge and store the trades, and the candles of the touched buckets."""
        first, end = interval.minutes
        retries_before = self._rest.stats.retries
        fetched: list[Trade] = []
        pages = 0
        async for page in self._rest.trade_pages(interval.symbol, first, end):
            pages += 1
            fetched.extend(page.trades)
        stored = await asyncio.to_thread(stored_trades, self._conn, interval.symbol,
                                         *repair_span(interval, self.timeframes))
        known = {(t.ts_us, t.trade_id) for t in stored}
        new_trades = sum((t.ts_us, t.trade_id) not in known for t in fetched)
        candles = repaired_candles(interval, merge_trades(stored, fetched), self.timeframes)
        await asyncio.to_thread(self._store.write_trades, fetched)
        await asyncio.to_thread(self._store.write_candles, candles)
        report = GapRepairReport(interval, pages, len(fetched), new_trades, len(candles),
                                 self._rest.stats.retries - retries_before)
        log.info("repaired %s: %d trades fetched in %d pages (%d new), %d candles rewritten",
                 interval, report.fetched_trades, pages, new_trades, report.candles_written)
        return report
