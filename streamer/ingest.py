"""Market-data ingest: Kraken WebSocket v2 trades -> 1m candles -> PostgreSQL and Redis.

One reader and one writer share the event loop. The reader parses every frame (malformed ones
are counted in ``rejected_frames``, logged and skipped), feeds the candle aggregator and queues
trades. The writer cuts a batch every ``write_batch_size`` trades or ``write_interval_s``,
whichever comes first, and writes it in a worker thread (psycopg and redis-py are synchronous),
one batch at a time so batches land in order: trades, closed and forming candles to the
database first, then latest prices, candles and the heartbeat to Redis. If the database falls
behind, the next batch simply grows.

A clean end (``stop()``, the ``done`` event of :meth:`TradeStreamer.run_until`, or the server
closing the connection) flushes everything, forming candles included. To be sure it has read
every message the server sent before the end, the streamer sends a ``ping`` and reads on until
the matching ``pong``: the server answers in order, after what it already sent.
Thin version: no reconnect (a disconnect ends the run, after the flush).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from triplegain_core.candles import CandleAggregator
from triplegain_core.config import Settings
from triplegain_core.hot_state import HotStatePublisher, LastPrice
from triplegain_core.kraken_v2 import (
    ErrorReply,
    KrakenFrameError,
    Pong,
    Status,
    SubscribeAck,
    TradeMessage,
    encode_ping,
    encode_subscribe,
    parse_server_message,
)
from triplegain_core.market import Candle, Trade
from triplegain_core.storage.market_store import MarketStore

log = logging.getLogger(__name__)

SUBSCRIBE_REQ_ID = 1
DRAIN_REQ_ID = 2
DRAIN_TIMEOUT_S = 10.0
# Log the first rejected frames, then one in this many, so a flood cannot drown the log.
_LOG_FIRST_REJECTED = 10
_LOG_EVERY_REJECTED = 1000


@dataclass
class StreamerStats:
    """Counters of one run, updated live (``TradeStreamer.stats``)."""

    trades: int = 0
    candles: int = 0  # closed 1m candles written, the final flush included
    rejected_frames: int = 0
    batches: int = 0  # batches that wrote something to the database
    late_trades: int = 0
    last_trade_ts_us: int = 0


@dataclass(frozen=True, slots=True)
class _Batch:
    trades: list[Trade]
    closed: list[Candle]
    forming: list[Candle]
    prices: list[LastPrice]


class TradeStreamer:
    """Streams ``settings.symbols`` trades from ``settings.ws_url`` into the stores.

    One connection per instance: call :meth:`run_until` once; ``stats`` is live meanwhile.
    """

    def __init__(
        self, settings: Settings, market_store: MarketStore, publisher: HotStatePublisher
    ) -> None:
        self._settings = settings
        self._store = market_store
        self._publisher = publisher
        self._symbols = frozenset(settings.symbols)
        self._aggregator = CandleAggregator("1m")
        self.stats = StreamerStats()
        self._pending: list[Trade] = []
        self._closed: list[Candle] = []
        self._prices: dict[str, Trade] = {}
        self._stop = asyncio.Event()
        self._pong = asyncio.Event()
        self._wake = asyncio.Event()
        self._ended = False

    def stop(self) -> None:
        """Ask for a clean end: read what the server already sent, flush, return."""
        self._stop.set()

    async def run_until(self, done: asyncio.Event | None = None) -> StreamerStats:
        """Stream until ``done`` is set (or :meth:`stop`, or the server closes); flush all
        pending data, forming candles included; return the final counters."""
        async with connect(self._settings.ws_url, max_size=None) as ws:
            await ws.send(encode_subscribe(self._settings.symbols, req_id=SUBSCRIBE_REQ_ID))
            writer = asyncio.create_task(self._writer())
            reader = asyncio.create_task(self._read(ws))
            drain = asyncio.create_task(self._drain(ws, done))
            try:
                await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
                if writer.done():  # the writer only ends early when a write failed
                    reader.cancel()
                    writer.result()
                await reader
            finally:
                drain.cancel()
                if not writer.done():
                    self._end_of_stream()
                    await writer
        return replace(self.stats)

    # --- reading ----------------------------------------------------------------------------

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                self._on_frame(frame)
        except ConnectionClosed as exc:
            log.warning("exchange connection lost: %s", exc)
        else:
            log.info("exchange connection closed (%s)", ws.close_code)

    def _on_frame(self, frame: str | bytes) -> None:
        try:
            message = parse_server_message(frame)
        except KrakenFrameError as exc:
            self._reject(exc, frame)
            return
        if type(message) is TradeMessage:
            self._on_trades(message, frame)
        elif type(message) is Pong:
            if message.req_id == DRAIN_REQ_ID:
                self._pong.set()
        elif type(message) is Status:
            level = logging.INFO if message.system == "online" else logging.WARNING
            log.log(level, "exchange status %s (api %s)", message.system, message.api_version)
        elif type(message) is SubscribeAck:
            if message.success:
                log.info("subscribed to %s %s", message.channel, message.symbol)
            else:
                log.error("subscription to %s failed: %s", message.symbol, message.error)
        elif type(message) is ErrorReply:
            log.error("exchange error: %s", message.error)

    def _on_trades(self, message: TradeMessage, frame: str | bytes) -> None:
        trades = message.trades
        for trade in trades:
            if trade.symbol not in self._symbols:
                self._reject(KrakenFrameError(f"trade for unsubscribed {trade.symbol}"), frame)
                return
        aggregator, prices, closed = self._aggregator, self._prices, self._closed
        for trade in trades:
            done = aggregator.add(trade)
            if done:
                closed.extend(done)
            prices[trade.symbol] = trade
        self._pending.extend(trades)
        stats = self.stats
        stats.trades += len(trades)
        stats.late_trades = aggregator.late_trades
        if trades:
            stats.last_trade_ts_us = max(stats.last_trade_ts_us, trades[-1].ts_us)
        if len(self._pending) >= self._settings.write_batch_size:
            self._wake.set()

    def _reject(self, error: KrakenFrameError, frame: str | bytes) -> None:
        self.stats.rejected_frames += 1
        count = self.stats.rejected_frames
        if count <= _LOG_FIRST_REJECTED or count % _LOG_EVERY_REJECTED == 0:
            log.warning("rejected frame #%d: %s; frame %.200r", count, error, frame)

    async def _drain(self, ws: ClientConnection, done: asyncio.Event | None) -> None:
        """On ``done`` or ``stop()``: ping, read up to the pong, then close."""
        waits = [asyncio.create_task(self._stop.wait())]
        if done is not None:
            waits.append(asyncio.create_task(done.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        try:
            await ws.send(encode_ping(DRAIN_REQ_ID))
            await asyncio.wait_for(self._pong.wait(), DRAIN_TIMEOUT_S)
        except TimeoutError:
            log.warning("no pong within %.0f s; closing without it", DRAIN_TIMEOUT_S)
        except ConnectionClosed:
            return
        await ws.close()

    # --- writing ----------------------------------------------------------------------------

    def _end_of_stream(self) -> None:
        self._closed.extend(self._aggregator.flush())
        self._ended = True
        self._wake.set()

    async def _writer(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._settings.write_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            final = self._ended
            batch = self._cut_batch(final)
            await asyncio.to_thread(self._write, batch)
            if final:
                return

    def _cut_batch(self, final: bool) -> _Batch:
        trades, self._pending = self._pending, []
        closed, self._closed = self._closed, []
        prices = [LastPrice(t.symbol, t.price, t.ts_us) for t in self._prices.values()]
        self._prices.clear()
        forming = [] if final or not trades else self._aggregator.forming()
        return _Batch(trades, closed, forming, prices)

    def _write(self, batch: _Batch) -> None:
        """Runs in a worker thread: database first, so what Redis announces is stored."""
        if batch.trades or batch.closed or batch.forming:
            self._store.write_trades(batch.trades)
            # Closed before forming: the store keeps the last version of a key in a batch.
            self._store.write_candles(batch.closed + batch.forming)
            self.stats.batches += 1
            self.stats.candles += len(batch.closed)
        heartbeat = {"ts_us": time.time_ns() // 1000, "trades": self.stats.trades,
                     "candles": self.stats.candles}
        self._publisher.publish(batch.prices, batch.forming, batch.closed, heartbeat)
