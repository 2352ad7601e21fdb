"""Repairing holes in the trades and candles over the exchange's REST history (the plan and the
merge are the core's, :mod:`triplegain_core.marketdata.gaps`).

In the stream: :class:`RestBackfill` is the streamer's ``backfill``, fetching a hole's trades
so they are applied in order with the live ones.

Out of band, for a hole left in the store (one the stream could not backfill, REST being
down): :class:`GapRepairer`, the edge around :mod:`triplegain_core.marketdata.gaps`. It fetches the
trades of the missed minutes over REST (ccxt, through :class:`RestMarketData`), reads the
stored trades of every touched bucket (up to the day of a ``1d`` candle), writes the fetched
trades (insert-or-ignore) and upserts the candles of every timeframe rebuilt from the union.
Running it twice changes nothing; afterwards the stored candles are those of an uninterrupted
stream.

Call it once every bucket the hole touches has closed in the live stream and its live candle
has been written (for ``1d``, the next day): the repaired candles then replace the partial
live ones, rather than being overwritten by them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from triplegain_core.adapters.kraken.rest import RestMarketData
from triplegain_core.marketdata.gaps import (
    MissedInterval,
    merge_trades,
    repair_span,
    repaired_candles,
)
from triplegain_core.model.market import TIMEFRAMES, Trade, us_to_datetime
from triplegain_core.storage.market_store import MarketStore

log = logging.getLogger(__name__)


class RestBackfill:
    """The streamer's ``backfill`` over REST: every trade of a hole's time span, paged."""

    def __init__(self, rest: RestMarketData) -> None:
        self._rest = rest

    async def __call__(self, hole: MissedInterval) -> list[Trade]:
        """The trades of ``hole.symbol`` in ``[hole.from_us, hole.to_us)``."""
        trades: list[Trade] = []
        async for page in self._rest.trade_pages(hole.symbol, hole.from_us, hole.to_us):
            trades.extend(page.trades)
        return trades


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
    """The stored trades of ``symbol`` with ``start_us <= ts < end_us``, in time order, with
    the last one before and the first one after (they say which minutes are quiet)."""
    store = MarketStore(conn)
    start, end = us_to_datetime(start_us), us_to_datetime(end_us)
    return merge_trades(store.trades(symbol, start, end), store.trades_around(symbol, start, end))


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
