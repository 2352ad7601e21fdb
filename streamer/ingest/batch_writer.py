"""The batch writer: applied trades and candles to PostgreSQL, then to Redis, in batches.

The reader hands it the trades applied and the candles they closed; it cuts batches of at most
``write_batch_size`` trades every ``write_interval_s``, or sooner when a batch is full, and
writes them in a worker thread (database first, then Redis, so what Redis announces is
stored). When it falls behind (``max_pending_batches`` full batches queued) the reader waits
for room, so memory is bounded and the exchange's socket applies TCP back-pressure. The final
batch (after :meth:`BatchWriter.finish`) carries everything left, the forming candles flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from streamer.ingest.channels import BookChannel, TickerChannel
from streamer.ingest.stats import StreamerStats
from triplegain_core.contracts.hot_state import Heartbeat, HotStatePublisher
from triplegain_core.marketdata.candles import CandleAggregator
from triplegain_core.model.market import Candle, Trade
from triplegain_core.model.quotes import BookSnapshot, LastPrice, Ticker
from triplegain_core.storage.market_store import MarketStore


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
    after the final batch, or raises when a write fails.
    """

    def __init__(self, store: MarketStore, publisher: HotStatePublisher, stats: StreamerStats, *,
                 aggregator: CandleAggregator, books: BookChannel, tickers: TickerChannel,
                 batch_size: int, interval_s: float, max_pending_batches: int,
                 book_store_interval_s: float) -> None:
        self._store = store
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

    async def run(self) -> None:
        """Write batches until :meth:`finish` and everything queued is written."""
        while True:
            with contextlib.suppress(TimeoutError):  # the interval passed: write what there is
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            while True:  # full batches back to back, so a backlog drains at database speed
                final = self._ended
                batch = self._cut_batch(final)
                await asyncio.to_thread(self._write, batch)
                if len(self._pending) < self._cap:
                    self._room.set()
                if final and not self._pending:
                    return
                if not final and len(self._pending) < self._batch_size:
                    break

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

    def _write(self, batch: _Batch) -> None:
        """Runs in a worker thread: database first, so what Redis announces is stored."""
        stats = self._stats
        if batch.trades or batch.closed or batch.forming or batch.stored_books:
            # One transaction; closed before forming: the last version of a key wins.
            self._store.write_batch(batch.trades, batch.closed + batch.forming,
                                    batch.stored_books)
            if batch.trades or batch.closed or batch.forming:
                stats.batches += 1
            stats.candles += len(batch.closed)
        heartbeat = Heartbeat(
            time.time_ns() // 1000, stats.trades, stats.candles, stats.late_trades,
            stats.duplicate_trades, stats.rejected_frames, stats.reconnects,
            stats.missed_intervals, stats.last_trade_ts_us)
        self._publisher.publish(batch.prices, batch.forming, batch.closed, heartbeat,
                                tickers=batch.tickers, books=batch.books, trades=batch.trades)
