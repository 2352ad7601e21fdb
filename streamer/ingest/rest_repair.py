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

Never giving up: :class:`GapRepairs` is the streamer's ``on_missed_interval``. It records each
hole in PostgreSQL (``missed_intervals``, where the ``candles_1m_complete`` data-quality check
counts the open ones as a failure) and retries its REST fetch with an exponential backoff until
every missing trade is back (REST down, or not yet serving them, is only a delay), then marks it
filled. The candles of each timeframe the hole touches are rebuilt once the live stream has
closed the buckets, and handed to the stream's own writer, so no partial live candle can
overwrite them. A restarted streamer takes the open holes up again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg

from triplegain_core.adapters.kraken.rest import RestMarketData
from triplegain_core.marketdata.gaps import (
    MissedInterval,
    repair_span,
    repaired_candles,
)
from triplegain_core.model.market import TIMEFRAMES, Candle, Trade, us_to_datetime
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.missed_interval_store import MissedIntervalStore, OpenHole

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
    """The stored trades of ``symbol`` with ``start_us <= ts < end_us``, in time order."""
    return MarketStore(conn).trades(symbol, us_to_datetime(start_us), us_to_datetime(end_us))


class GapRepairer:
    """Repairs missed intervals of the live stream from REST into the store on ``conn``."""

    def __init__(self, rest: RestMarketData, conn: psycopg.Connection,
                 timeframes: Sequence[str] = TIMEFRAMES) -> None:
        self._rest = rest
        self._conn = conn
        self._store = MarketStore(conn)
        self.timeframes = tuple(timeframes)

    def write_candles(self, candles: Sequence[Candle]) -> None:
        """Upsert rebuilt candles (blocking: run it in a worker thread)."""
        self._store.write_candles(candles)

    async def repair(self, interval: MissedInterval) -> GapRepairReport:
        """Fetch, merge and store the trades, and the candles of the touched buckets."""
        retries_before = self._rest.stats.retries
        fetched, pages = await self.fetch(interval)
        new_trades = await self.store_trades(interval, fetched)
        candles = await self.rebuild(interval, self.timeframes)
        await asyncio.to_thread(self._store.write_candles, candles)
        report = GapRepairReport(interval, pages, len(fetched), new_trades, len(candles),
                                 self._rest.stats.retries - retries_before)
        log.info("repaired %s: %d trades fetched in %d pages (%d new), %d candles rewritten",
                 interval, report.fetched_trades, pages, new_trades, report.candles_written)
        return report

    async def fetch(self, interval: MissedInterval) -> tuple[list[Trade], int]:
        """The trades of the interval's whole minutes over REST, and the pages it took."""
        first, end = interval.minutes
        fetched: list[Trade] = []
        pages = 0
        async for page in self._rest.trade_pages(interval.symbol, first, end):
            pages += 1
            fetched.extend(page.trades)
        return fetched, pages

    async def store_trades(self, interval: MissedInterval, fetched: Sequence[Trade]) -> int:
        """Store the fetched trades (insert-or-ignore); how many were not stored yet."""
        first, end = interval.minutes
        stored = await asyncio.to_thread(stored_trades, self._conn, interval.symbol, first, end)
        known = {(t.ts_us, t.trade_id) for t in stored}
        await asyncio.to_thread(self._store.write_trades, fetched)
        return sum((t.ts_us, t.trade_id) not in known for t in fetched)

    async def rebuild(self, interval: MissedInterval, timeframes: Sequence[str]) -> list[Candle]:
        """The candles of ``timeframes`` the interval touches, from the stored trades (with
        the last one before their span and the first after: they say which minutes are quiet)."""
        start, end = (us_to_datetime(us) for us in repair_span(interval, timeframes))
        stored = await asyncio.to_thread(self._store.trades, interval.symbol, start, end)
        around = await asyncio.to_thread(self._store.trades_around, interval.symbol, start, end)
        return repaired_candles(interval, [*stored, *around], timeframes)


def missing_ids(interval: MissedInterval, fetched: Sequence[Trade]) -> int:
    """How many of the interval's missing trade ids ``fetched`` lacks (0 when the ids are not
    known: REST's answer for the span is then all there is)."""
    if interval.first_trade_id is None or interval.last_trade_id is None:
        return 0
    brought = {t.trade_id for t in fetched if t.symbol == interval.symbol
               and interval.first_trade_id <= t.trade_id <= interval.last_trade_id}
    return interval.last_trade_id - interval.first_trade_id + 1 - len(brought)


@dataclass
class _Repair:
    """One hole under repair: its row, when to try next, and the timeframes still to rebuild."""

    hole: OpenHole
    attempts: int
    due: float
    filled: bool = False
    rebuilt: set[str] = field(default_factory=set)


class GapRepairs:
    """Repairs the holes the stream leaves, retrying each with a backoff until it is filled.

    ``submit`` is the streamer's ``on_missed_interval``; :meth:`run` is a task beside it. With
    ``closed_before`` (symbol, timeframe -> the start of the live stream's first bucket not yet
    closed) and ``write_candles`` (the stream's writer), a timeframe's touched candles are
    rebuilt once the stream closed them; without, at once, straight into the store.
    """

    def __init__(self, repairer: GapRepairer, holes: MissedIntervalStore, *,
                 closed_before: Callable[[str, str], int] | None = None,
                 write_candles: Callable[[Sequence[Candle]], None] | None = None,
                 backoff_s: float = 1.0, max_backoff_s: float = 300.0,
                 poll_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._repairer = repairer
        self._holes = holes
        self._closed_before = closed_before
        self._write_candles = write_candles
        # Filled holes whose candles went to the stream's writer: written again by finish().
        self._handed_over: list[_Repair] = []
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._poll_s = poll_s
        self._clock = clock
        self._submitted: list[MissedInterval] = []
        self._wake = asyncio.Event()
        self._repairs: list[_Repair] = []
        self.filled = 0
        self.failed_attempts = 0

    def submit(self, interval: MissedInterval) -> None:
        """A hole the stream could not fill (called in the event loop: it only queues)."""
        self._submitted.append(interval)
        self._wake.set()

    @property
    def open(self) -> int:
        """Holes known and not yet filled."""
        return len(self._submitted) + sum(not r.filled for r in self._repairs)

    async def run(self, stop: asyncio.Event) -> None:
        """Repair until ``stop`` is set, taking up the holes left open by an earlier run first."""
        for hole in await asyncio.to_thread(self._holes.open_holes):
            self._repairs.append(_Repair(hole, hole.attempts, self._clock()))
        while not stop.is_set():
            wait_s = None
            try:
                await self.step()
            except psycopg.Error as exc:  # the database is away: the holes wait, none is lost
                log.error("gap repair paused: %s; retrying in %.1f s", exc, self._poll_s)
                wait_s = self._poll_s
            self._wake.clear()
            waits = [asyncio.create_task(stop.wait())]
            if wait_s is None:
                wait_s = self._next_wait()
                waits.append(asyncio.create_task(self._wake.wait()))
            try:
                await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()

    async def step(self) -> None:
        """Record what was submitted, try every hole that is due, rebuild what has closed."""
        while self._submitted:  # one at a time: a failed write leaves the rest queued
            hole = await asyncio.to_thread(self._holes.record, self._submitted[0])
            self._submitted.pop(0)
            if all(r.hole.id != hole.id for r in self._repairs):
                self._repairs.append(_Repair(hole, hole.attempts, self._clock()))
        for repair in list(self._repairs):
            if not repair.filled and repair.due <= self._clock():
                await self._fetch(repair)
            if repair.filled:
                await self._rebuild(repair)
                if repair.rebuilt >= set(self._repairer.timeframes):
                    self._repairs.remove(repair)

    async def finish(self) -> None:
        """The stream has ended and flushed every candle: rebuild what the filled holes still
        touch straight into the store (the open holes stay recorded for the next run).

        The candles handed to the stream's writer are written again too: the repair loop may
        have handed some over after the stream's last flush, and they would be lost."""
        self._closed_before = self._write_candles = None
        for repair in self._handed_over:
            repair.rebuilt.clear()
            await self._rebuild(repair)
        self._handed_over.clear()
        for repair in [r for r in self._repairs if r.filled]:
            await self._rebuild(repair)
            self._repairs.remove(repair)

    def _next_wait(self) -> float:
        waiting = [r.due - self._clock() for r in self._repairs if not r.filled]
        if any(r.filled for r in self._repairs):
            waiting.append(self._poll_s)  # buckets to rebuild when the stream closes them
        return max(0.0, min(waiting, default=self._poll_s * 60))

    async def _fetch(self, repair: _Repair) -> None:
        interval = repair.hole.interval
        try:
            fetched, _ = await self._repairer.fetch(interval)
            missing = missing_ids(interval, fetched)
            error = (f"REST brought {(interval.trades or 0) - missing} of {interval.trades}"
                     " missing trades") if missing else None
        except Exception as exc:  # REST down or broken: only a delay, never the end
            fetched, error = [], f"{type(exc).__name__}: {exc}"
        if error is None:
            new = await self._repairer.store_trades(interval, fetched)
            await asyncio.to_thread(self._holes.filled, repair.hole.id)
            repair.filled = True
            self.filled += 1
            log.info("hole %s filled after %d attempts: %d trades stored", interval,
                     repair.attempts + 1, new)
            return
        repair.attempts += 1
        self.failed_attempts += 1
        delay = min(self._backoff_s * 2 ** min(repair.attempts - 1, 30), self._max_backoff_s)
        repair.due = self._clock() + delay
        await asyncio.to_thread(self._holes.attempt_failed, repair.hole.id, error)
        log.error("hole %s not filled yet (attempt %d: %s); retrying in %.1f s", interval,
                  repair.attempts, error, delay)

    async def _rebuild(self, repair: _Repair) -> None:
        interval = repair.hole.interval
        ready = [tf for tf in self._repairer.timeframes if tf not in repair.rebuilt and (
            self._closed_before is None
            or self._closed_before(interval.symbol, tf) >= interval.span(tf)[1])]
        if not ready:
            return
        candles = await self._repairer.rebuild(interval, ready)
        if self._write_candles is None:
            await asyncio.to_thread(self._repairer.write_candles, candles)
        else:
            self._write_candles(candles)
            if repair not in self._handed_over:
                self._handed_over.append(repair)
        repair.rebuilt.update(ready)
