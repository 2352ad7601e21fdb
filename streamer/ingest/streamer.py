"""Market-data ingest: Kraken WebSocket v2 -> candles -> PostgreSQL and Redis.

Channels: ``trade`` (with its 50-trade snapshot), ``book`` (kept locally, CRC32-checked on
every message), ``ohlc`` (interval 1, to cross-check the candles built here), ``ticker`` and
``instrument``; ``heartbeat`` and ``status`` on every connection.

Trades. Kraken's ``trade_id`` is a per-book sequence, so each symbol's trades pass through a
sequencer: a trade already applied is a duplicate (counted, dropped); one that comes early is
held until the ids before it arrive (frames reordered); a gap that does not close within
``gap_patience_trades`` or ``gap_patience_s`` is repaired by resubscribing the symbol with a
snapshot (the last 50 trades). What even the snapshot cannot bring back becomes a
:class:`MissedInterval`, counted and logged. With a ``backfill`` (REST through ccxt), the
trades after the hole wait while the missing ones are fetched, then all are applied in id
order; without one, or for what REST cannot bring back either, the hole is handed to the
``on_missed_interval`` hook (out-of-band REST gap repair) and the stream goes on after it. So
the aggregator sees each trade once, in id order.

Restart. ``resume_from`` (the last stored trade per symbol) and ``warm_up`` (the stored
trades of the buckets still open at that trade, see :func:`streamer.ingest.gap_repair.resume_state`)
let a restarted streamer go on where the stored data stands: the candles of every timeframe
continue from their stored trades, and the hole left while it was down (the trades it held in
memory when it died and those printed since) is found at the first trade received and
backfilled like any other.

Book. A checksum mismatch invalidates the local book (nobody can read it), is counted and
logged, and a fresh snapshot is requested (unsubscribe + subscribe).

Connection life. A connection with no message for ``stale_after_s`` is stale: it is closed and,
like a dropped one, replaced after an exponential backoff with full jitter, within Kraken's
limit on connection attempts per window; every subscription is sent again (Kraken restores
nothing) and the trade snapshot closes the hole left by the disconnection.

Writing. The reader feeds the candle aggregator and queues trades; the writer cuts batches of at
most ``write_batch_size`` trades every ``write_interval_s`` or sooner when a batch is full, and
writes them in a worker thread (database first, then Redis). When the writer falls behind, the
reader stops reading (``max_pending_batches`` full batches queued), so memory is bounded and
the exchange's socket applies TCP back-pressure.

A clean end (``stop()`` or the ``done`` event of :meth:`TradeStreamer.run_until`) asks each
symbol's trade snapshot again (to catch a lost last frame), sends a ``ping`` and reads up to
the ``pong`` (the server answers in order), then flushes everything, forming candles included.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from triplegain_core.adapters.kraken.book import BookChecksumError, InvalidBookError, KrakenBookTop, OrderBook
from triplegain_core.adapters.kraken.messages import (
    BOOK_CHANNEL,
    INSTRUMENT_CHANNEL,
    OHLC_CHANNEL,
    TICKER_CHANNEL,
    TRADE_CHANNEL,
    KrakenBookMessage,
    KrakenErrorReply,
    KrakenFrameError,
    KrakenInstrumentMessage,
    KrakenInstrumentPair,
    KrakenOhlcBar,
    KrakenOhlcMessage,
    KrakenPong,
    KrakenStatus,
    KrakenSubscribeAck,
    KrakenTicker,
    KrakenTickerMessage,
    KrakenTradeMessage,
    encode_ping,
    encode_subscribe,
    parse_server_message,
)
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import BookSnapshot, Heartbeat, HotStatePublisher, LastPrice, Ticker
from triplegain_core.marketdata.candles import CandleAggregator
from triplegain_core.model.market import TIMEFRAMES, US_PER_MINUTE, Candle, Trade
from triplegain_core.storage.market_store import MarketStore

log = logging.getLogger(__name__)

DRAIN_REQ_ID = 2
RESYNC_REQ_ID = 3
DRAIN_TIMEOUT_S = 10.0
ALL_CHANNELS = (TRADE_CHANNEL, BOOK_CHANNEL, OHLC_CHANNEL, TICKER_CHANNEL, INSTRUMENT_CHANNEL)
# Log the first rejected frames, then one in this many, so a flood cannot drown the log.
_LOG_FIRST_REJECTED = 10
_LOG_EVERY_REJECTED = 1000
_MAX_HELD_TRADES = 10_000  # a symbol's out-of-order trades held before giving the gap up
_OHLC_BARS_KEPT = 8  # exchange candles kept per symbol for the cross-check
AGGREGATOR_ID_WINDOW = 2048


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """How the streamer connects, recovers and bounds itself (defaults follow Kraken).

    ``max_reconnects`` None reconnects forever; ``channels`` are subscribed on every
    connection (``trade`` is required)."""

    stale_after_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_attempts_per_window: int = 150  # Kraken bans an IP after ~150 attempts in 10 minutes
    attempt_window_s: float = 600.0
    max_reconnects: int | None = None
    gap_patience_trades: int = 8
    gap_patience_s: float = 0.25
    resync_timeout_s: float = 1.0  # a snapshot asked that long ago is asked again
    max_resyncs: int = 3  # snapshots asked for one gap before it is left to REST repair
    book_depth: int = 10
    channels: tuple[str, ...] = ALL_CHANNELS
    max_pending_batches: int = 4
    open_timeout_s: float = 10.0
    book_store_interval_s: float = 1.0  # at most one stored book snapshot per symbol per this

    def __post_init__(self) -> None:
        if TRADE_CHANNEL not in self.channels:
            raise ValueError("the trade channel is required")
        unknown = set(self.channels) - set(ALL_CHANNELS)
        if unknown:
            raise ValueError(f"unknown channels {sorted(unknown)}")
        if self.book_depth not in (10, 25):
            raise ValueError("book_depth must be 10 or 25")
        if not (self.stale_after_s > 0 and self.backoff_initial_s > 0
                and self.backoff_max_s >= self.backoff_initial_s
                and self.max_attempts_per_window >= 1 and self.max_pending_batches >= 1):
            raise ValueError("invalid connection policy")


@dataclass(frozen=True, slots=True)
class MissedInterval:
    """Trades the WebSocket could not deliver: ``symbol`` trades with ids
    ``first_trade_id..last_trade_id`` (inclusive), with ``from_us <= ts_us < to_us``:
    ``from_us`` is the time of the last trade received before the hole, ``to_us`` one
    microsecond after the first trade received after it (the half-open interval of
    :class:`triplegain_core.marketdata.gaps.MissedInterval`, to hand to REST gap repair).
    ``reason``: ``"reconnect"`` when the hole spans a reconnection (or a restart with
    ``resume_from``), else ``"gap"``."""

    symbol: str
    from_us: int
    to_us: int
    first_trade_id: int
    last_trade_id: int
    reason: str

    @property
    def trades(self) -> int:
        """How many trades are missing."""
        return self.last_trade_id - self.first_trade_id + 1


Backfill = Callable[[MissedInterval], Awaitable[Sequence[Trade]]]
"""Fetches the trades of a :class:`MissedInterval` (REST): any trades of its time span; the
streamer keeps those of the missing ids."""


@dataclass(frozen=True, slots=True)
class TradeMark:
    """The last trade stored for a symbol, to resume its sequence after a restart."""

    trade_id: int
    ts_us: int


@dataclass
class StreamerStats:
    """Counters of one run, updated live (``TradeStreamer.stats``)."""

    trades: int = 0  # unique trades applied
    candles: int = 0  # closed (or corrected) candles written, the final flush included
    rejected_frames: int = 0
    batches: int = 0  # batches that wrote something to the database
    late_trades: int = 0
    last_trade_ts_us: int = 0
    duplicate_trades: int = 0
    reordered_trades: int = 0  # trades that came early and waited for their predecessors
    gap_resyncs: int = 0  # trade snapshots asked to close a gap
    missed_intervals: int = 0
    missed_trades: int = 0
    backfilled_trades: int = 0  # missed trades brought back by the backfill, in order
    resumed_trades: int = 0  # stored trades replayed into the candles at start (warm_up)
    connections: int = 0
    reconnects: int = 0
    stale_connections: int = 0
    book_snapshots: int = 0
    book_updates: int = 0
    book_checksum_failures: int = 0
    ohlc_checked: int = 0
    ohlc_mismatches: int = 0
    backpressure_waits: int = 0


@dataclass(frozen=True, slots=True)
class _Batch:
    trades: list[Trade]
    closed: list[Candle]
    forming: list[Candle]
    prices: list[LastPrice]
    tickers: list[Ticker]
    books: list[BookSnapshot]  # validated books changed since the last batch, for Redis
    stored_books: list[BookSnapshot]  # the ones due to be stored in the database


class _Sequence:
    """One symbol's trade-id sequencer."""

    __slots__ = ("next_id", "last_ts", "held", "gap_since", "resync_at", "resyncs",
                 "reconnected", "filling")

    def __init__(self) -> None:
        self.next_id: int | None = None
        self.last_ts = 0
        self.held: dict[int, Trade] = {}
        self.gap_since = 0.0
        self.resync_at = 0.0  # when a snapshot was asked; 0 when none is awaited
        self.resyncs = 0  # snapshots asked for the current gap
        self.reconnected = False  # a hole found next spans a reconnection
        self.filling = False  # a backfill of the hole before ``held`` is due or under way


class _StaleConnection(Exception):
    """No message for longer than the policy allows."""


class TradeStreamer:
    """Streams ``settings.symbols`` from ``settings.ws_url`` into the stores.

    Call :meth:`run_until` once; ``stats`` is live meanwhile. Keyword arguments:
    ``policy`` (:class:`ConnectionPolicy`), ``on_missed_interval`` (called in the event loop
    with each :class:`MissedInterval` that is not backfilled; keep it quick), ``backfill``
    (:data:`Backfill`, awaited before the trades after a hole are applied), ``resume_from``
    (symbol -> :class:`TradeMark` of the last stored trade, so a hole across a restart is
    found too) and ``warm_up`` (the stored trades of the buckets open at that mark, in order,
    fed to the candle aggregator only: they are stored already).
    """

    def __init__(
        self,
        settings: Settings,
        market_store: MarketStore,
        publisher: HotStatePublisher,
        *,
        policy: ConnectionPolicy | None = None,
        on_missed_interval: Callable[[MissedInterval], None] | None = None,
        resume_from: Mapping[str, TradeMark] | None = None,
        backfill: Backfill | None = None,
        warm_up: Iterable[Trade] = (),
    ) -> None:
        self._settings = settings
        self._store = market_store
        self._publisher = publisher
        self.policy = policy or ConnectionPolicy()
        self._on_missed = on_missed_interval
        self._backfill = backfill
        self._fill_wanted: deque[MissedInterval] = deque()
        self._filling = False
        self._symbols = frozenset(settings.symbols)
        # The sequencer already drops duplicates by id, so the aggregator's own id window
        # can stay small (its memory is per symbol).
        self._aggregator = CandleAggregator(TIMEFRAMES, trade_id_window=AGGREGATOR_ID_WINDOW)
        self.stats = StreamerStats()
        for trade in warm_up:
            # The candles these trades close were stored with them: only the open ones matter.
            self._aggregator.add(trade)
            self.stats.resumed_trades += 1
        self.missed_intervals: deque[MissedInterval] = deque(maxlen=10_000)
        self._sequences = {symbol: _Sequence() for symbol in settings.symbols}
        for symbol, mark in (resume_from or {}).items():
            if symbol in self._sequences:
                self._sequences[symbol].next_id = mark.trade_id + 1
                self._sequences[symbol].last_ts = mark.ts_us
                self._sequences[symbol].reconnected = True
        self._books = {s: OrderBook(s, self.policy.book_depth) for s in settings.symbols}
        self._book_resync: set[str] = set()  # symbols whose fresh snapshot is awaited
        self._book_resync_wanted: list[str] = []
        self._ohlc: dict[str, dict[int, KrakenOhlcBar]] = {s: {} for s in settings.symbols}
        self.tickers: dict[str, KrakenTicker] = {}
        self._fresh_tickers: dict[str, KrakenTicker] = {}
        self._books_changed: set[str] = set()
        self._book_stored_at: dict[str, float] = {}
        self.instruments: dict[str, KrakenInstrumentPair] = {}
        self._pending: list[Trade] = []
        self._closed: list[Candle] = []
        self._prices: dict[str, Trade] = {}
        self._stop = asyncio.Event()
        self._pong = asyncio.Event()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._ended = False
        self._finished = False
        self._ws: ClientConnection | None = None
        self._last_message = 0.0
        self._attempts: deque[float] = deque()
        self._received_since_connect = False
        self._cap = settings.write_batch_size * self.policy.max_pending_batches

    def stop(self) -> None:
        """Ask for a clean end: read what the server already sent, flush, return."""
        self._stop.set()

    def top_of_book(self, symbol: str) -> KrakenBookTop | None:
        """Best bid/ask of ``symbol``'s validated book; ``None`` while it is invalid or empty."""
        book = self._books.get(symbol)
        if book is None or not book.valid:
            return None
        return book.top()

    async def run_until(self, done: asyncio.Event | None = None) -> StreamerStats:
        """Stream until ``done`` is set (or :meth:`stop`), reconnecting whenever the connection
        drops or goes stale (up to ``policy.max_reconnects``); flush all pending data, forming
        candles included; return the final counters."""
        writer = asyncio.create_task(self._writer())
        failures = 0
        try:
            while True:
                try:
                    await self._session(done, writer)
                except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError,
                        _StaleConnection) as exc:
                    log.warning("exchange connection ended: %s", exc or type(exc).__name__)
                if self._finished or writer.done() or self._ending(done):
                    break
                limit = self.policy.max_reconnects
                if limit is not None and self.stats.reconnects >= limit:
                    break
                failures = 0 if self._received_since_connect else failures + 1
                if not await self._backoff(failures, done):
                    break
                self.stats.reconnects += 1
                for sequence in self._sequences.values():
                    sequence.reconnected = True
        finally:
            if not writer.done():
                await self._end_of_stream()
                await writer
            else:
                writer.result()
        return replace(self.stats)

    def _ending(self, done: asyncio.Event | None) -> bool:
        return self._stop.is_set() or (done is not None and done.is_set())

    async def _backoff(self, failures: int, done: asyncio.Event | None) -> bool:
        """Sleep before the next attempt: exponential with full jitter, and never more than
        the policy's attempts per window. False if asked to end meanwhile."""
        policy = self.policy
        delay = random.uniform(0, min(policy.backoff_max_s,
                                      policy.backoff_initial_s * 2 ** min(failures, 30)))
        now = time.monotonic()
        while self._attempts and self._attempts[0] < now - policy.attempt_window_s:
            self._attempts.popleft()
        if len(self._attempts) >= policy.max_attempts_per_window:
            delay = max(delay, self._attempts[0] + policy.attempt_window_s - now)
        waits = [asyncio.create_task(self._stop.wait())]
        if done is not None:
            waits.append(asyncio.create_task(done.wait()))
        try:
            finished, _ = await asyncio.wait(waits, timeout=delay)
        finally:
            for wait in waits:
                wait.cancel()
        return not finished

    # --- one connection ---------------------------------------------------------------------

    async def _session(self, done: asyncio.Event | None, writer: asyncio.Task[None]) -> None:
        self._attempts.append(time.monotonic())
        self._received_since_connect = False
        async with connect(self._settings.ws_url, max_size=None, close_timeout=1,
                           open_timeout=self.policy.open_timeout_s) as ws:
            self._ws = ws
            self.stats.connections += 1
            self._last_message = time.monotonic()
            for book in self._books.values():
                book.invalidate()
            self._book_resync.clear()
            for sequence in self._sequences.values():
                sequence.resync_at = 0.0
                sequence.resyncs = 0
            await self._subscribe_all(ws)
            reader = asyncio.create_task(self._read(ws))
            watchdog = asyncio.create_task(self._watch(ws))
            ending = asyncio.create_task(self._wait_end(done))
            tasks = {reader, watchdog, ending, writer}
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if writer.done():  # the writer only ends early when a write failed
                    return
                if ending.done() and not reader.done():
                    await self._drain(ws)
                    self._finished = True
                    await reader
                elif watchdog.done():
                    watchdog.result()
                else:
                    await reader
            finally:
                for task in (reader, watchdog, ending):
                    task.cancel()
                self._ws = None

    async def _subscribe_all(self, ws: ClientConnection) -> None:
        symbols = list(self._settings.symbols)
        channels = self.policy.channels
        await ws.send(encode_subscribe(symbols, TRADE_CHANNEL, snapshot=True, req_id=1))
        if BOOK_CHANNEL in channels:
            await ws.send(encode_subscribe(symbols, BOOK_CHANNEL, snapshot=True, req_id=1,
                                           depth=self.policy.book_depth))
        if OHLC_CHANNEL in channels:
            # The snapshot brings the current candle back, should its last update have been
            # lost with the previous connection.
            await ws.send(encode_subscribe(symbols, OHLC_CHANNEL, snapshot=True, req_id=1,
                                           interval=1))
        if TICKER_CHANNEL in channels:
            await ws.send(encode_subscribe(symbols, TICKER_CHANNEL, req_id=1))
        if INSTRUMENT_CHANNEL in channels:
            await ws.send(encode_subscribe([], INSTRUMENT_CHANNEL, snapshot=True, req_id=1))

    async def _wait_end(self, done: asyncio.Event | None) -> None:
        waits = [asyncio.create_task(self._stop.wait())]
        if done is not None:
            waits.append(asyncio.create_task(done.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _watch(self, ws: ClientConnection) -> None:
        """Stale connection detection, and the gap deadlines of the sequencers."""
        policy = self.policy
        period = min(0.05, policy.stale_after_s / 4, policy.gap_patience_s / 2)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            # A backfill holds the reader back: the silence is ours, not the exchange's.
            if not self._filling and now - self._last_message > policy.stale_after_s:
                self.stats.stale_connections += 1
                raise _StaleConnection(f"no message for {policy.stale_after_s:.1f} s")
            await self._check_gaps(ws, now)

    async def _check_gaps(self, ws: ClientConnection, now: float) -> None:
        policy = self.policy
        for symbol, sequence in self._sequences.items():
            if not sequence.held or sequence.filling:
                continue
            if sequence.resync_at:
                if now - sequence.resync_at > policy.resync_timeout_s:
                    if sequence.resyncs >= policy.max_resyncs:
                        self._give_up_gap(symbol, sequence)
                    else:  # the snapshot may have been lost: ask again
                        await self._resync_trades(ws, symbol)
                continue
            if (len(sequence.held) >= policy.gap_patience_trades
                    or now - sequence.gap_since >= policy.gap_patience_s):
                await self._resync_trades(ws, symbol)

    async def _resync_trades(self, ws: ClientConnection, symbol: str, gap: bool = True) -> None:
        """Ask the symbol's trade snapshot again (Kraken: unsubscribe, then subscribe)."""
        sequence = self._sequences[symbol]
        sequence.resync_at = time.monotonic()
        sequence.resyncs += 1
        self.stats.gap_resyncs += gap
        await ws.send(encode_subscribe([symbol], TRADE_CHANNEL, req_id=RESYNC_REQ_ID,
                                       method="unsubscribe"))
        await ws.send(encode_subscribe([symbol], TRADE_CHANNEL, snapshot=True,
                                       req_id=RESYNC_REQ_ID))

    async def _resync_book(self, symbol: str) -> None:
        ws = self._ws
        if ws is None or symbol in self._book_resync:
            return
        self._book_resync.add(symbol)
        depth = self.policy.book_depth
        await ws.send(encode_subscribe([symbol], BOOK_CHANNEL, req_id=RESYNC_REQ_ID,
                                       method="unsubscribe", depth=depth))
        await ws.send(encode_subscribe([symbol], BOOK_CHANNEL, snapshot=True,
                                       req_id=RESYNC_REQ_ID, depth=depth))

    async def _drain(self, ws: ClientConnection) -> None:
        """At a clean end: the trade snapshots again (a lost last frame leaves no gap to see),
        then ping and read up to the pong."""
        try:
            for symbol in self._settings.symbols:
                await self._resync_trades(ws, symbol, gap=False)
            await ws.send(encode_ping(DRAIN_REQ_ID))
            await asyncio.wait_for(self._pong.wait(), DRAIN_TIMEOUT_S)
        except TimeoutError:
            log.warning("no pong within %.0f s; closing without it", DRAIN_TIMEOUT_S)
        except ConnectionClosed:
            return
        await ws.close()

    # --- reading ----------------------------------------------------------------------------

    async def _read(self, ws: ClientConnection) -> None:
        try:
            if self._fill_wanted:  # a backfill the previous connection did not finish
                await self._fill_holes()
            async for frame in ws:
                self.on_frame(frame)
                if self._fill_wanted:
                    # Reading waits for the backfill: the trades after the hole queue up in
                    # the socket (TCP back-pressure) rather than in memory.
                    await self._fill_holes()
                if len(self._pending) >= self._cap:
                    self.stats.backpressure_waits += 1
                    self._room.clear()
                    self._wake.set()
                    await self._room.wait()
                if self._book_resync_wanted:
                    for symbol in self._book_resync_wanted:
                        await self._resync_book(symbol)
                    self._book_resync_wanted.clear()
        except ConnectionClosed as exc:
            log.warning("exchange connection lost: %s", exc)
        else:
            log.info("exchange connection closed (%s)", ws.close_code)

    def on_frame(self, frame: str | bytes) -> None:
        """Handle one frame from the exchange: a malformed one is counted in
        ``stats.rejected_frames``, logged and skipped, never raised."""
        self._last_message = time.monotonic()
        try:
            message = parse_server_message(frame)
        except KrakenFrameError as exc:
            self._reject(exc, frame)
            return
        kind = type(message)
        if kind is KrakenTradeMessage:
            self._on_trades(message, frame)
        elif kind is KrakenBookMessage:
            self._on_book(message)
        elif kind is KrakenOhlcMessage:
            for bar in message.bars:
                bars = self._ohlc.get(bar.symbol)
                if bars is not None and bar.interval == 1:
                    bars[bar.interval_begin_us] = bar
                    if len(bars) > _OHLC_BARS_KEPT:
                        del bars[min(bars)]
        elif kind is KrakenTickerMessage:
            for ticker in message.tickers:
                if ticker.symbol in self._symbols:
                    self.tickers[ticker.symbol] = self._fresh_tickers[ticker.symbol] = ticker
        elif kind is KrakenInstrumentMessage:
            self.instruments.update({pair.symbol: pair for pair in message.pairs})
            missing = self._symbols - set(self.instruments)
            if missing:
                log.error("the exchange does not list %s", ", ".join(sorted(missing)))
        elif kind is KrakenPong:
            if message.req_id == DRAIN_REQ_ID:
                self._pong.set()
        elif kind is KrakenStatus:
            level = logging.INFO if message.system == "online" else logging.WARNING
            log.log(level, "exchange status %s (api %s)", message.system, message.api_version)
        elif kind is KrakenSubscribeAck:
            if not message.success:
                log.error("subscription to %s %s failed: %s", message.channel, message.symbol,
                          message.error)
            else:
                self._received_since_connect = True
        elif kind is KrakenErrorReply:
            log.error("exchange error: %s", message.error)

    def _on_trades(self, message: KrakenTradeMessage, frame: str | bytes) -> None:
        trades = message.trades
        sequences = self._sequences
        for trade in trades:
            if trade.symbol not in sequences:
                self._reject(KrakenFrameError(f"trade for unsubscribed {trade.symbol}"), frame)
                return
        self._received_since_connect = True
        ready: list[Trade] = []
        if message.kind == "snapshot":
            self._on_snapshot(trades, ready)
        else:
            for trade in trades:
                sequence = sequences[trade.symbol]
                next_id = sequence.next_id
                if next_id is None or trade.trade_id == next_id:
                    ready.append(trade)
                    sequence.next_id = trade.trade_id + 1
                    sequence.last_ts = trade.ts_us
                    sequence.reconnected = False
                    if sequence.held:
                        self._release(sequence, ready)
                elif trade.trade_id < next_id or trade.trade_id in sequence.held:
                    self.stats.duplicate_trades += 1
                else:
                    self._hold(trade, sequence)
        if ready:
            self._apply(ready)

    def _hold(self, trade: Trade, sequence: _Sequence) -> None:
        if not sequence.held:
            sequence.gap_since = time.monotonic()
        sequence.held[trade.trade_id] = trade
        if len(sequence.held) > _MAX_HELD_TRADES:
            self._give_up_gap(trade.symbol, sequence)

    def _release(self, sequence: _Sequence, ready: list[Trade], reordered: bool = True) -> None:
        held = sequence.held
        next_id = sequence.next_id
        while next_id in held:
            trade = held.pop(next_id)
            ready.append(trade)
            self.stats.reordered_trades += reordered
            next_id += 1
            sequence.last_ts = trade.ts_us
        sequence.next_id = next_id
        if not held:
            sequence.gap_since = sequence.resync_at = 0.0
            sequence.resyncs = 0

    def _on_snapshot(self, trades: list[Trade], ready: list[Trade]) -> None:
        by_symbol: dict[str, dict[int, Trade]] = {}
        for trade in trades:
            by_symbol.setdefault(trade.symbol, {})[trade.trade_id] = trade
        for symbol, merged in by_symbol.items():
            sequence = self._sequences[symbol]
            # The snapshot and the trades held for the gap, as one run in id order.
            for trade_id, trade in sequence.held.items():
                merged.setdefault(trade_id, trade)
            sequence.held.clear()
            ids = sorted(merged)
            for index, trade_id in enumerate(ids):
                next_id = sequence.next_id
                if next_id is not None and trade_id < next_id:
                    self.stats.duplicate_trades += 1
                    continue
                trade = merged[trade_id]
                if next_id is not None and trade_id > next_id:
                    self._missed(sequence, symbol, trade, next_id)
                    if sequence.filling:  # the rest waits for the backfill of the hole
                        sequence.held.update((i, merged[i]) for i in ids[index:])
                        break
                ready.append(trade)
                sequence.next_id = trade_id + 1
                sequence.last_ts = trade.ts_us
            # We hold the latest trades: nothing before them is missing any more.
            sequence.gap_since = sequence.resync_at = 0.0
            sequence.resyncs = 0
            sequence.reconnected = False
        if not trades:  # an empty snapshot says nothing of the gaps it was asked for
            for symbol, sequence in self._sequences.items():
                if sequence.resync_at:
                    self._settle_after_snapshot(symbol, sequence, ready)

    def _settle_after_snapshot(self, symbol: str, sequence: _Sequence,
                               ready: list[Trade]) -> None:
        """No snapshot can close this gap: report it, and go on from the trades held."""
        sequence.resync_at = 0.0
        sequence.resyncs = 0
        next_id = sequence.next_id
        if next_id is not None:
            for trade_id in [i for i in sequence.held if i < next_id]:
                del sequence.held[trade_id]
                self.stats.duplicate_trades += 1
        if sequence.held:
            first = min(sequence.held)
            if next_id is not None and first > next_id:
                self._missed(sequence, symbol, sequence.held[first], next_id)
                if sequence.filling:
                    sequence.reconnected = False
                    return
            sequence.next_id = first
            self._release(sequence, ready)
        sequence.reconnected = False

    def _give_up_gap(self, symbol: str, sequence: _Sequence) -> None:
        ready: list[Trade] = []
        self._settle_after_snapshot(symbol, sequence, ready)
        if ready:
            self._apply(ready)

    def _missed(self, sequence: _Sequence, symbol: str, after: Trade, first_id: int) -> None:
        """Record the hole before ``after``; with a backfill, mark the symbol ``filling`` (the
        caller then holds ``after`` and what follows), else hand the hole on."""
        hole = MissedInterval(symbol, sequence.last_ts, after.ts_us + 1, first_id,
                              after.trade_id - 1,
                              "reconnect" if sequence.reconnected else "gap")
        self.stats.missed_intervals += 1
        self.stats.missed_trades += hole.trades
        self.missed_intervals.append(hole)
        if self._backfill is not None:
            log.info("missed %d %s trades (ids %d..%d) between %d and %d us (%s): "
                     "backfilling them", hole.trades, symbol, hole.first_trade_id,
                     hole.last_trade_id, hole.from_us, hole.to_us, hole.reason)
            sequence.filling = True
            self._fill_wanted.append(hole)
            return
        log.warning("missed %d %s trades (ids %d..%d) between %d and %d us (%s): "
                    "left to REST gap repair", hole.trades, symbol, hole.first_trade_id,
                    hole.last_trade_id, hole.from_us, hole.to_us, hole.reason)
        if self._on_missed is not None:
            self._on_missed(hole)

    async def _fill_holes(self) -> None:
        """Backfill the holes found, each before the trades held after it; what the backfill
        cannot bring back is handed to the ``on_missed_interval`` hook."""
        assert self._backfill is not None
        self._filling = True
        try:
            while self._fill_wanted:
                hole = self._fill_wanted[0]
                try:
                    fetched = await self._backfill(hole)
                except Exception as exc:  # a failing REST must not stop the stream
                    log.error("backfill of %s ids %d..%d failed: %s", hole.symbol,
                              hole.first_trade_id, hole.last_trade_id, exc)
                    fetched = ()
                self._fill_wanted.popleft()
                self._merge_backfill(hole, fetched)
        finally:
            self._filling = False
            self._last_message = time.monotonic()

    def _merge_backfill(self, hole: MissedInterval, fetched: Sequence[Trade]) -> None:
        sequence = self._sequences[hole.symbol]
        held = sequence.held
        brought = 0
        for trade in fetched:
            if (trade.symbol == hole.symbol
                    and hole.first_trade_id <= trade.trade_id <= hole.last_trade_id
                    and trade.trade_id not in held):
                held[trade.trade_id] = trade
                brought += 1
        self.stats.backfilled_trades += brought
        sequence.filling = False
        ready: list[Trade] = []
        self._release(sequence, ready, reordered=False)
        if held:
            first = min(held)
            if first > sequence.next_id:
                rest = MissedInterval(hole.symbol, sequence.last_ts, held[first].ts_us + 1,
                                      sequence.next_id, first - 1, hole.reason)
                log.warning("backfill left %d %s trades (ids %d..%d) missing: "
                            "left to REST gap repair", rest.trades, rest.symbol,
                            rest.first_trade_id, rest.last_trade_id)
                if self._on_missed is not None:
                    self._on_missed(rest)
                sequence.next_id = first
            self._release(sequence, ready, reordered=False)
        if brought:
            log.info("backfilled %d %s trades (ids %d..%d)", brought, hole.symbol,
                     hole.first_trade_id, hole.last_trade_id)
        if ready:
            self._apply(ready)

    def _apply(self, trades: list[Trade]) -> None:
        aggregator, prices, closed = self._aggregator, self._prices, self._closed
        for trade in trades:
            done = aggregator.add(trade)
            if done:
                closed.extend(done)
                self._cross_check(done)
            prices[trade.symbol] = trade
        self._pending.extend(trades)
        stats = self.stats
        stats.trades += len(trades)
        stats.late_trades = aggregator.late_trades
        last = trades[-1].ts_us
        if last > stats.last_trade_ts_us:
            stats.last_trade_ts_us = last
        if len(self._pending) >= self._settings.write_batch_size:
            self._wake.set()

    def _cross_check(self, candles: list[Candle]) -> None:
        """Compare closed 1m candles with the exchange's own ``ohlc`` candle of that minute."""
        for candle in candles:
            if candle.timeframe != "1m":
                continue
            bar = self._ohlc.get(candle.symbol, {}).get(candle.open_time_us)
            if bar is None:
                continue
            self.stats.ohlc_checked += 1
            same = (bar.open == candle.open and bar.high == candle.high and bar.low == candle.low
                    and bar.close == candle.close and bar.trades == candle.trade_count
                    and math.isclose(bar.volume, candle.volume, rel_tol=1e-9))
            if not same:
                self.stats.ohlc_mismatches += 1
                log.warning("candle %s %d differs from the exchange's ohlc: %s vs %s",
                            candle.symbol, candle.open_time_us // US_PER_MINUTE, candle, bar)

    def _on_book(self, message: KrakenBookMessage) -> None:
        for data in message.books:
            book = self._books.get(data.symbol)
            if book is None:
                continue
            try:
                if message.kind == "snapshot":
                    self._book_resync.discard(data.symbol)
                    book.apply_snapshot(data.bids, data.asks, data.checksum, data.ts_us)
                    self.stats.book_snapshots += 1
                else:
                    book.apply_update(data.bids, data.asks, data.checksum, data.ts_us)
                    self.stats.book_updates += 1
                self._books_changed.add(data.symbol)
            except InvalidBookError:
                continue  # updates between a mismatch and the fresh snapshot
            except BookChecksumError as exc:
                self.stats.book_checksum_failures += 1
                log.warning("book checksum failure #%d: %s; asking a fresh snapshot",
                            self.stats.book_checksum_failures, exc)
                self._book_resync_wanted.append(data.symbol)

    def _reject(self, error: KrakenFrameError, frame: str | bytes) -> None:
        self.stats.rejected_frames += 1
        count = self.stats.rejected_frames
        if count <= _LOG_FIRST_REJECTED or count % _LOG_EVERY_REJECTED == 0:
            log.warning("rejected frame #%d: %s; frame %.200r", count, error, frame)

    # --- writing ----------------------------------------------------------------------------

    async def _end_of_stream(self) -> None:
        ready: list[Trade] = []
        for symbol, sequence in self._sequences.items():
            if sequence.held and not sequence.filling:
                self._settle_after_snapshot(symbol, sequence, ready)
        if ready:
            self._apply(ready)
        if self._fill_wanted:  # REST needs no socket: the last holes are backfilled too
            await self._fill_holes()
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
            while True:  # full batches back to back, so a backlog drains at database speed
                final = self._ended
                batch = self._cut_batch(final)
                await asyncio.to_thread(self._write, batch)
                if len(self._pending) < self._cap:
                    self._room.set()
                if final and not self._pending:
                    return
                if not final and len(self._pending) < self._settings.write_batch_size:
                    break

    def _cut_batch(self, final: bool) -> _Batch:
        size = self._settings.write_batch_size
        trades, self._pending = self._pending[:size], self._pending[size:]
        closed, self._closed = self._closed, []
        prices = [LastPrice(t.symbol, t.price, t.ts_us) for t in self._prices.values()]
        self._prices.clear()
        forming = [] if final or not trades else self._aggregator.forming()
        tickers = [Ticker(t.symbol, t.ts_us or int(time.time_ns() // 1000), t.bid, t.bid_qty,
                             t.ask, t.ask_qty, t.last, t.volume, t.vwap, t.low, t.high, t.change,
                             t.change_pct) for t in self._fresh_tickers.values()]
        self._fresh_tickers.clear()
        books = [snapshot for symbol in self._books_changed
                 if (snapshot := self._book_snapshot(symbol)) is not None]
        self._books_changed.clear()
        now = time.monotonic()
        stored = []
        for snapshot in books:
            if now - self._book_stored_at.get(snapshot.symbol, -math.inf) \
                    >= self.policy.book_store_interval_s:
                self._book_stored_at[snapshot.symbol] = now
                stored.append(snapshot)
        return _Batch(trades, closed, forming, prices, tickers, books, stored)

    def _book_snapshot(self, symbol: str) -> BookSnapshot | None:
        """The validated book as the hot-state contract shows it; ``None`` while invalid
        (a book that failed its checksum never reaches a consumer)."""
        book = self._books[symbol]
        if not book.valid:
            return None
        bids = tuple((float(level.price), float(level.qty)) for level in book.bids())
        asks = tuple((float(level.price), float(level.qty)) for level in book.asks())
        if not bids and not asks:
            return None
        return BookSnapshot(symbol, book.ts_us or time.time_ns() // 1000, book.depth, bids, asks)

    def _write(self, batch: _Batch) -> None:
        """Runs in a worker thread: database first, so what Redis announces is stored."""
        if batch.trades or batch.closed or batch.forming or batch.stored_books:
            # One transaction; closed before forming: the last version of a key wins.
            self._store.write_batch(batch.trades, batch.closed + batch.forming,
                                    batch.stored_books)
            if batch.trades or batch.closed or batch.forming:
                self.stats.batches += 1
            self.stats.candles += len(batch.closed)
        stats = self.stats
        heartbeat = Heartbeat(
            time.time_ns() // 1000, stats.trades, stats.candles, stats.late_trades,
            stats.duplicate_trades, stats.rejected_frames, stats.reconnects,
            stats.missed_intervals, stats.last_trade_ts_us)
        self._publisher.publish(batch.prices, batch.forming, batch.closed, heartbeat,
                                tickers=batch.tickers, books=batch.books, trades=batch.trades)
