"""The batch writer: applied trades and candles to PostgreSQL, then to Redis, in batches.

The reader hands it the trades applied and the candles they closed; it cuts batches of at most
``write_batch_size`` trades every ``write_interval_s``, or sooner when a batch is full, and
writes them in a worker thread (database first, then Redis, so what Redis announces is
stored). When it falls behind (``max_pending_batches`` full batches queued) the reader waits
for room, so memory is bounded and the exchange's socket applies TCP back-pressure. The final
batch (after :meth:`BatchWriter.finish`) carries everything left, the forming candles flushed.

A server that goes away stops nothing: each batch cut joins a queue of held batches (a
:class:`~streamer.ingest.spill.SpillBuffer`: bounded memory, the rest on disk) written in
order, database then Redis, once the server is back; meanwhile the writer retries with
backoff and the reader goes on. The writes are idempotent upserts, so a batch retried after a
failure that hid a commit is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from streamer.ingest.channels import BookChannel, TickerChannel
from streamer.ingest.spill import SpillBuffer
from streamer.ingest.stats import StreamerStats
from triplegain_core.contracts.hot_state import Heartbeat, HotStatePublisher
from triplegain_core.marketdata.candles import CandleAggregator
from triplegain_core.model.market import Candle, Trade
from triplegain_core.model.quotes import BookSnapshot, LastPrice, Ticker
from triplegain_core.storage.market_store import MarketStore

log = logging.getLogger(__name__)

# A server away (down, restarting, unreachable): hold and retry. Anything else is a bug.
_DATABASE_AWAY = (psycopg.OperationalError, psycopg.InterfaceError)
_REDIS_AWAY = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
RETRY_INITIAL_S = 0.25
RETRY_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class _Batch:
    trades: list[Trade]
    closed: list[Candle]
    forming: list[Candle]
    prices: list[LastPrice]
    tickers: list[Ticker]
    books: list[BookSnapshot]  # validated books changed since the last batch, for Redis
    stored_books: list[BookSnapshot]  # the ones due to be stored in the database


class BatchWriter:
    """Batches what the reader applied and writes it to ``store`` and ``publisher``.

    ``aggregator`` gives the forming candles of each batch; ``books`` and ``tickers`` the book
    snapshots and tickers changed since the last one. Run :meth:`run` as a task; it returns
    after the final batch is written. ``spill_path`` is the file held batches beyond
    ``max_pending_batches`` go to; ``reconnect`` (optional) gives a store on a new connection
    after the database went away.
    """

    def __init__(self, store: MarketStore, publisher: HotStatePublisher, stats: StreamerStats, *,
                 aggregator: CandleAggregator, books: BookChannel, tickers: TickerChannel,
                 batch_size: int, interval_s: float, max_pending_batches: int,
                 book_store_interval_s: float, spill_path: Path,
                 reconnect: Callable[[], MarketStore] | None = None) -> None:
        self._store = store
        self._reconnect = reconnect
        self._held: SpillBuffer[_Batch] = SpillBuffer(spill_path, max_pending_batches)
        self._held_trades = 0
        self._head_stored = False  # the oldest held batch is in the database already
        self._failures = 0
        self._retry_at = 0.0
        self._away: str | None = None  # the server being waited for, while holding
        self._database_lost = False
        self._publisher = publisher
        self._stats = stats
        self._aggregator = aggregator
        self._books = books
        self._tickers = tickers
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._book_store_interval_s = book_store_interval_s
        self._cap = batch_size * max_pending_batches
        self._pending: list[Trade] = []
        self._closed: list[Candle] = []
        self._prices: dict[str, Trade] = {}
        self._book_stored_at: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._ended = False

    def add(self, trades: Sequence[Trade], closed: Sequence[Candle]) -> None:
        """Queue applied ``trades`` (in order) and the candles they ``closed``."""
        if closed:
            self._closed.extend(closed)
        prices = self._prices
        for trade in trades:
            prices[trade.symbol] = trade
        self._pending.extend(trades)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    @property
    def full(self) -> bool:
        """Whether the reader must wait for room (:meth:`wait_for_room`)."""
        return len(self._pending) >= self._cap

    async def wait_for_room(self) -> None:
        """Wait until the queued trades fall below the cap again."""
        self._stats.backpressure_waits += 1
        self._room.clear()
        self._wake.set()
        await self._room.wait()

    def finish(self, closed: Sequence[Candle]) -> None:
        """No more trades: the last batches carry everything left and ``closed`` (the forming
        candles flushed), then :meth:`run` returns."""
        self._closed.extend(closed)
        self._ended = True
        self._wake.set()

    @property
    def held(self) -> int:
        """Batches cut and not written yet (a server away)."""
        return len(self._held)

    async def run(self) -> None:
        """Write batches until :meth:`finish` and everything queued is written."""
        try:
            while True:
                wait = self._interval_s
                if self._away is not None:  # wake for the next retry
                    wait = min(wait, max(0.0, self._retry_at - time.monotonic()))
                with contextlib.suppress(TimeoutError):  # the interval passed: write what there is
                    await asyncio.wait_for(self._wake.wait(), wait)
                self._wake.clear()
                while True:  # full batches back to back, so a backlog drains at database speed
                    final = self._ended
                    self._hold(self._cut_batch(final))
                    # Cut batches are held (spilled beyond the bound): the reader goes on.
                    if len(self._pending) < self._cap:
                        self._room.set()
                    written = self._away is None or time.monotonic() >= self._retry_at
                    if written:
                        written = await asyncio.to_thread(self._write_held)
                    if final and not self._pending and not self._held:
                        return
                    if not written or (not final and len(self._pending) < self._batch_size):
                        break
        finally:
            self._held.close()

    def _hold(self, batch: _Batch) -> None:
        self._held.append(batch)
        self._held_trades += len(batch.trades)

    def _write_held(self) -> bool:
        """Runs in a worker thread: write the held batches in order; False when a server is
        away (then retry after the backoff)."""
        held = self._held
        while held:
            batch = held.peek()
            try:
                if not self._head_stored:
                    self._store_batch(batch)
                    self._head_stored = True
                self._publish(batch)
            except _DATABASE_AWAY as exc:
                self._database_lost = True
                self._wait_for("PostgreSQL", exc)
                return False
            except _REDIS_AWAY as exc:
                self._wait_for("Redis", exc)
                return False
            held.pop()
            self._held_trades -= len(batch.trades)
            self._head_stored = False
        if self._away is not None:
            log.warning("%s is back: the held batches are written", self._away)
            self._away = None
        self._failures = 0
        return True

    def _wait_for(self, server: str, exc: Exception) -> None:
        if self._away != server:  # once per outage (and server)
            log.warning("%s unavailable (%s): holding %d batches (%d trades, %d on disk) and "
                        "retrying", server, str(exc).strip() or type(exc).__name__,
                        len(self._held), self._held_trades, self._held.spilled)
            self._away = server
        self._retry_at = time.monotonic() + min(RETRY_MAX_S,
                                                RETRY_INITIAL_S * 2 ** min(self._failures, 30))
        self._failures += 1

    def _cut_batch(self, final: bool) -> _Batch:
        size = self._batch_size
        trades, self._pending = self._pending[:size], self._pending[size:]
        closed, self._closed = self._closed, []
        prices = [LastPrice(t.symbol, t.price, t.ts_us) for t in self._prices.values()]
        self._prices.clear()
        forming = [] if final or not trades else self._aggregator.forming()
        tickers = self._tickers.take_fresh()
        books = self._books.take_changed()
        now = time.monotonic()
        stored = []
        for snapshot in books:
            if now - self._book_stored_at.get(snapshot.symbol, -math.inf) \
                    >= self._book_store_interval_s:
                self._book_stored_at[snapshot.symbol] = now
                stored.append(snapshot)
        return _Batch(trades, closed, forming, prices, tickers, books, stored)

    def _store_batch(self, batch: _Batch) -> None:
        """Database first, so what Redis announces is stored."""
        stats = self._stats
        if batch.trades or batch.closed or batch.forming or batch.stored_books:
            if self._database_lost and self._reconnect is not None:
                self._store = self._reconnect()
            self._database_lost = False
            # One transaction; closed before forming: the last version of a key wins.
            self._store.write_batch(batch.trades, batch.closed + batch.forming,
                                    batch.stored_books)
            if batch.trades or batch.closed or batch.forming:
                stats.batches += 1
            stats.candles += len(batch.closed)

    def _publish(self, batch: _Batch) -> None:
        stats = self._stats
        heartbeat = Heartbeat(
            time.time_ns() // 1000, stats.trades, stats.candles, stats.late_trades,
            stats.duplicate_trades, stats.rejected_frames, stats.reconnects,
            stats.missed_intervals, stats.last_trade_ts_us)
        self._publisher.publish(batch.prices, batch.forming, batch.closed, heartbeat,
                                tickers=batch.tickers, books=batch.books, trades=batch.trades)
