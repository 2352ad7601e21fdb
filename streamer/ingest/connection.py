"""Market-data ingest: Kraken WebSocket v2 -> candles -> PostgreSQL and Redis.

Channels: ``trade`` (with its 50-trade snapshot), ``book`` (kept locally, CRC32-checked on
every message), ``ohlc`` (interval 1, to cross-check the candles built here), ``ticker`` and
``instrument``; ``heartbeat`` and ``status`` on every connection.

:class:`TradeStreamer` is the connection's life; the rest is handed to its parts:

- trades to the pure :class:`~triplegain_core.marketdata.sequencer.TradeSequencer`, which
  yields each symbol's trades once, in id order, or reports a hole. A gap it names due
  (``gap_patience_trades`` or ``gap_patience_s``) is closed by resubscribing the symbol with a
  snapshot (the last 50 trades). With a ``backfill`` (REST through ccxt), the trades after a
  hole wait while the missing ones are fetched, then all are applied in id order; without one,
  or for what REST cannot bring back either, the hole is handed to the ``on_missed_interval``
  hook (out-of-band REST gap repair, :mod:`streamer.ingest.rest_repair`) and the stream goes on
  after it. So the candle aggregator sees each trade once, in id order;
- books, exchange candles, tickers and instruments to :mod:`streamer.ingest.channels`;
- applied trades and candles to the :class:`~streamer.ingest.batch_writer.BatchWriter`.

Quiet minutes are candles (flat at the close before them, no volume), as Kraken publishes
them, once they are known to be quiet: between two trades of a symbol that the sequencer hands
on without a hole, and, for a symbol in step (nothing held, backfilled or unconfirmed since a
reconnection), up to the feed's market time less a minute's lag, the time of the other symbols'
trades on the connection. A hole the stream could not close is no quiet minute: it is left
to the REST repair. All of it is decided on the exchange's times, never the wall clock's; the
wall clock only bounds them: a trade stamped more than ``max_clock_lead_s`` ahead of it is a
corrupt frame, rejected (its quiet minutes up to a damaged year would be millions of candles).

Restart. ``resume_from`` (the last stored trade per symbol) and ``warm_up`` (the stored
trades of the buckets still open at that trade, see :func:`streamer.ingest.resume.resume_state`)
let a restarted streamer go on where the stored data stands: the candles of every timeframe
continue from their stored trades, and the hole left while it was down (the trades it held in
memory when it died and those printed since) is found at the first trade received and
backfilled like any other.

Connection life. A connection with no message for ``stale_after_s`` is stale: it is closed and,
like a dropped one, replaced after an exponential backoff with full jitter, within Kraken's
limit on connection attempts per window; every subscription is sent again (Kraken restores
nothing) and the trade snapshot closes the hole left by the disconnection. A book that failed
its checksum gets a fresh snapshot (unsubscribe + subscribe).

A clean end (``stop()`` or the ``done`` event of :meth:`TradeStreamer.run_until`) asks each
symbol's trade snapshot again (to catch a lost last frame), sends a ``ping`` and reads up to
the ``pong`` (the server answers in order), then flushes everything, forming candles included.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from streamer.ingest.batch_writer import BatchWriter
from streamer.ingest.channels import BookChannel, InstrumentChannel, OhlcChannel, TickerChannel
from streamer.ingest.stats import StreamerStats
from triplegain_core.adapters.kraken.book import KrakenBookTop
from triplegain_core.adapters.kraken.encode import encode_ping, encode_subscribe
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
    KrakenOhlcMessage,
    KrakenPong,
    KrakenStatus,
    KrakenSubscribeAck,
    KrakenTickerMessage,
    KrakenTradeMessage,
)
from triplegain_core.adapters.kraken.parse import parse_server_message
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import HotStatePublisher
from triplegain_core.marketdata.candles import QUIET_EVIDENCE_LAG_US, CandleAggregator
from triplegain_core.marketdata.gaps import MissedInterval
from triplegain_core.marketdata.sequencer import GapPatience, TradeMark, TradeSequencer
from triplegain_core.model.market import (
    TIMEFRAMES,
    US_PER_MINUTE,
    US_PER_SECOND,
    Candle,
    Trade,
)
from triplegain_core.storage.market_store import MarketStore

log = logging.getLogger(__name__)

DRAIN_REQ_ID = 2
RESYNC_REQ_ID = 3
DRAIN_TIMEOUT_S = 10.0
# Connections tried at the end of a stream that ended while disconnected, to drain it.
END_RECONNECTS = 3
ALL_CHANNELS = (TRADE_CHANNEL, BOOK_CHANNEL, OHLC_CHANNEL, TICKER_CHANNEL, INSTRUMENT_CHANNEL)
# Log the first rejected frames, then one in this many, so a flood cannot drown the log.
_LOG_FIRST_REJECTED = 10
_LOG_EVERY_REJECTED = 1000
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
    # A trade stamped further ahead of this machine's clock is corrupt (a damaged year would
    # otherwise have its symbol's quiet minutes filled up to it: millions of candles).
    max_clock_lead_s: float = 300.0

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
                and self.max_attempts_per_window >= 1 and self.max_pending_batches >= 1
                and self.max_clock_lead_s > 0):
            raise ValueError("invalid connection policy")

    @property
    def gap_patience(self) -> GapPatience:
        """The sequencer's patience with a gap, from this policy."""
        return GapPatience(self.gap_patience_trades, self.gap_patience_s, self.resync_timeout_s,
                           self.max_resyncs)


Backfill = Callable[[MissedInterval], Awaitable[Sequence[Trade]]]
"""Fetches the trades of a :class:`MissedInterval` (REST): any trades of its time span; the
streamer keeps those of the missing ids."""


class _StaleConnection(Exception):
    """No message for longer than the policy allows."""


class TradeStreamer:
    """Streams ``settings.symbols`` from ``settings.ws_url`` into the stores.

    Call :meth:`run_until` once; ``stats`` is live meanwhile. Keyword arguments:
    ``policy`` (:class:`ConnectionPolicy`), ``on_missed_interval`` (called in the event loop
    with each :class:`MissedInterval` that is not backfilled; keep it quick), ``backfill``
    (:data:`Backfill`, awaited before the trades after a hole are applied), ``resume_from``
    (symbol -> :class:`TradeMark` of the last stored trade, so a hole across a restart is
    found too), ``warm_up`` (the stored trades of the buckets open at that mark, in order,
    fed to the candle aggregator only: they are stored already), ``reconnect_store`` (a
    store on a new database connection, used after the database went away) and ``wall_clock``
    (this machine's time in seconds, against which trade times are bounded).
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
        reconnect_store: Callable[[], MarketStore] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._wall_clock = wall_clock
        self.policy = policy or ConnectionPolicy()
        self._on_missed = on_missed_interval
        self._backfill = backfill
        self._fill_wanted: deque[MissedInterval] = deque()
        self._filling = False
        symbols = settings.symbols
        self._symbols = frozenset(symbols)
        # The sequencer already drops duplicates by id, so the aggregator's own id window
        # can stay small (its memory is per symbol).
        self._aggregator = CandleAggregator(TIMEFRAMES, trade_id_window=AGGREGATOR_ID_WINDOW)
        self.stats = StreamerStats()
        for trade in warm_up:
            # The candles these trades close were stored with them: only the open ones matter.
            self._aggregator.add(trade)
            self.stats.resumed_trades += 1
        self.missed_intervals: deque[MissedInterval] = deque(maxlen=10_000)
        self.sequencer = TradeSequencer(symbols, backfill=backfill is not None,
                                        patience=self.policy.gap_patience, counts=self.stats,
                                        resume_from=resume_from)
        self._books = BookChannel(symbols, self.policy.book_depth, self.stats)
        self._ohlc = OhlcChannel(symbols, self.stats)
        self._tickers = TickerChannel(symbols)
        self._instruments = InstrumentChannel(symbols)
        self.tickers = self._tickers.latest
        self.instruments = self._instruments.pairs
        self._writer = BatchWriter(
            market_store, publisher, self.stats, aggregator=self._aggregator, books=self._books,
            tickers=self._tickers, batch_size=settings.write_batch_size,
            interval_s=settings.write_interval_s,
            max_pending_batches=self.policy.max_pending_batches,
            book_store_interval_s=self.policy.book_store_interval_s,
            spill_path=settings.data_dir / "spill" / f"streamer-{os.getpid()}-{id(self):x}.bin",
            reconnect=reconnect_store)
        self._stop = asyncio.Event()
        self._pong = asyncio.Event()
        self._finished = False
        self._ws: ClientConnection | None = None
        self._last_message = 0.0
        self._attempts: deque[float] = deque()
        self._received_since_connect = False
        # The feed's market time: a trade time received (any symbol) in the newest minute seen,
        # and when the next minute starts.
        self._market_us = max((mark.ts_us for mark in (resume_from or {}).values()), default=0)
        self._next_market_minute_us = self._market_us - self._market_us % US_PER_MINUTE \
            + US_PER_MINUTE

    def stop(self) -> None:
        """Ask for a clean end: read what the server already sent, flush, return."""
        self._stop.set()

    def closed_before(self, symbol: str, timeframe: str) -> int:
        """The start of ``symbol``'s first ``timeframe`` bucket whose candle has not closed
        yet: a repair may rewrite the candles before it without a live one overwriting them."""
        return self._aggregator.open_bucket(symbol, timeframe)

    def write_candles(self, candles: Sequence[Candle]) -> None:
        """Queue candles rebuilt elsewhere (a gap repair) after those already queued, so they
        replace the live stream's versions in the store and on the hot state."""
        self._writer.add((), candles)

    def top_of_book(self, symbol: str) -> KrakenBookTop | None:
        """Best bid/ask of ``symbol``'s validated book; ``None`` while it is invalid or empty."""
        return self._books.top(symbol)

    async def run_until(self, done: asyncio.Event | None = None, *, drain_at_end: bool = True) -> StreamerStats:
        """Stream until ``done`` is set (or :meth:`stop`), reconnecting whenever the connection
        drops or goes stale (up to ``policy.max_reconnects``); flush all pending data, forming
        candles included; return the final counters.

        ``done`` is the end of the stream (a replay that sent everything): when it comes while
        the connection is down, up to :data:`END_RECONNECTS` more connections are tried at once
        to drain what was sent meanwhile. A live stream stopped by hand passes ``drain_at_end=False``:
        it stops at once, and its next start resumes from the last stored trade.
        """
        writer = asyncio.create_task(self._writer.run())
        failures = 0
        # Connections tried after ``done`` came while the connection was down.
        closing = 0
        try:
            while True:
                try:
                    await self._session(done, writer)
                except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError,
                        _StaleConnection) as exc:
                    log.warning("exchange connection ended: %s", exc or type(exc).__name__)
                if self._finished or writer.done() or self._stop.is_set():
                    break
                if done is not None and done.is_set():
                    if not drain_at_end:
                        break
                    # The end came while the connection was down: what the exchange sent
                    # meanwhile is seen only by connecting once more (the drain's snapshots).
                    closing += 1
                    if closing > END_RECONNECTS:
                        log.warning("ended without a last clean connection (%d tried): trades sent while it was"
                                    " down may be missing", END_RECONNECTS)
                        break
                limit = self.policy.max_reconnects
                if limit is not None and self.stats.reconnects >= limit:
                    break
                # No growing pause once the end has come: a few quick attempts, then stop.
                failures = 0 if self._received_since_connect or closing else failures + 1
                if not await self._backoff(failures):
                    break
                self.stats.reconnects += 1
                self.sequencer.reconnecting()
        finally:
            if not writer.done():
                await self._end_of_stream()
                await writer
            else:
                writer.result()
        return replace(self.stats)

    async def _backoff(self, failures: int) -> bool:
        """Sleep before the next attempt: exponential with full jitter, and never more than
        the policy's attempts per window. False if stopped meanwhile (the end of the stream
        does not cut it short: the next connection is the one that drains)."""
        policy = self.policy
        delay = random.uniform(0, min(policy.backoff_max_s,
                                      policy.backoff_initial_s * 2 ** min(failures, 30)))
        now = time.monotonic()
        while self._attempts and self._attempts[0] < now - policy.attempt_window_s:
            self._attempts.popleft()
        if len(self._attempts) >= policy.max_attempts_per_window:
            delay = max(delay, self._attempts[0] + policy.attempt_window_s - now)
        stopping = asyncio.create_task(self._stop.wait())
        try:
            finished, _ = await asyncio.wait({stopping}, timeout=delay)
        finally:
            stopping.cancel()
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
            self._books.connected()
            self.sequencer.connected()
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
                    # Finished only once the drain came back whole; else the next connection drains.
                    self._finished = await self._drain(ws)
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
        """Stale connection detection, and the gap deadlines of the sequencer."""
        policy = self.policy
        period = min(0.05, policy.stale_after_s / 4, policy.gap_patience_s / 2)
        silence, heard, tick = 0.0, self._last_message, time.monotonic()
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            # Silence counts only while this process is responsive: a tick that comes late
            # (a starved event loop on a loaded machine) adds one period at most, for what the
            # exchange sent meanwhile is still unread in the socket, not missing. A backfill
            # holds the reader back: that silence is ours too.
            if self._filling or self._last_message != heard:
                heard, silence = self._last_message, 0.0
            else:
                silence += min(now - tick, 2 * period)
            tick = now
            if silence > policy.stale_after_s:
                self.stats.stale_connections += 1
                raise _StaleConnection(f"no message for {policy.stale_after_s:.1f} s")
            ready: list[Trade] = []
            due = self.sequencer.due(now, ready)
            self._after_sequencer(ready)
            for symbol in due:
                await self._resync_trades(ws, symbol)

    async def _resync_trades(self, ws: ClientConnection, symbol: str, gap: bool = True) -> None:
        """Ask the symbol's trade snapshot again (Kraken: unsubscribe, then subscribe)."""
        self.sequencer.resync_asked(symbol, time.monotonic())
        self.stats.gap_resyncs += gap
        await ws.send(encode_subscribe([symbol], TRADE_CHANNEL, req_id=RESYNC_REQ_ID,
                                       method="unsubscribe"))
        await ws.send(encode_subscribe([symbol], TRADE_CHANNEL, snapshot=True,
                                       req_id=RESYNC_REQ_ID))

    async def _resync_books(self, ws: ClientConnection) -> None:
        depth = self.policy.book_depth
        for symbol in self._books.take_resyncs():
            await ws.send(encode_subscribe([symbol], BOOK_CHANNEL, req_id=RESYNC_REQ_ID,
                                           method="unsubscribe", depth=depth))
            await ws.send(encode_subscribe([symbol], BOOK_CHANNEL, snapshot=True,
                                           req_id=RESYNC_REQ_ID, depth=depth))

    async def _drain(self, ws: ClientConnection) -> bool:
        """At a clean end: the trade snapshots again (a lost last frame leaves no gap to see),
        then ping and read up to the pong; whether the pong came (all asked before it was read)."""
        try:
            for symbol in self._settings.symbols:
                await self._resync_trades(ws, symbol, gap=False)
            self._pong.clear()  # a late pong of an earlier drain proves nothing of this one
            await ws.send(encode_ping(DRAIN_REQ_ID))
            await asyncio.wait_for(self._pong.wait(), DRAIN_TIMEOUT_S)
        except TimeoutError:
            log.warning("no pong within %.0f s; closing without it", DRAIN_TIMEOUT_S)
            await ws.close()
            return False
        except ConnectionClosed:
            return False
        await ws.close()
        return True

    # --- reading ----------------------------------------------------------------------------

    async def _read(self, ws: ClientConnection) -> None:
        writer = self._writer
        try:
            if self._fill_wanted:  # a backfill the previous connection did not finish
                await self._fill_holes()
            async for frame in ws:
                self.on_frame(frame)
                if self._fill_wanted:
                    # Reading waits for the backfill: the trades after the hole queue up in
                    # the socket (TCP back-pressure) rather than in memory.
                    await self._fill_holes()
                if writer.full:
                    await writer.wait_for_room()
                if self._books.resync_wanted:
                    await self._resync_books(ws)
        except ConnectionClosed as exc:
            log.warning("exchange connection lost: %s", exc)
        else:
            log.info("exchange connection closed (%s)", ws.close_code)

    def on_frame(self, frame: str | bytes) -> None:
        """Handle one frame from the exchange: a malformed one is counted in
        ``stats.rejected_frames``, logged and skipped, never raised."""
        self._last_message = now = time.monotonic()
        try:
            message = parse_server_message(frame)
        except KrakenFrameError as exc:
            self._reject(exc, frame)
            return
        # isinstance on the concrete message classes (none subclasses another, so it means
        # type() is): it narrows the union and costs no more than type() for trades, tested first.
        if isinstance(message, KrakenTradeMessage):
            self._on_trades(message, frame, now)
        elif isinstance(message, KrakenBookMessage):
            self._books.on_message(message)
        elif isinstance(message, KrakenOhlcMessage):
            self._ohlc.on_message(message)
        elif isinstance(message, KrakenTickerMessage):
            self._tickers.on_message(message)
        elif isinstance(message, KrakenInstrumentMessage):
            self._instruments.on_message(message)
        elif isinstance(message, KrakenPong):
            if message.req_id == DRAIN_REQ_ID:
                self._pong.set()
        elif isinstance(message, KrakenStatus):
            level = logging.INFO if message.system == "online" else logging.WARNING
            log.log(level, "exchange status %s (api %s)", message.system, message.api_version)
        elif isinstance(message, KrakenSubscribeAck):
            if not message.success:
                log.error("subscription to %s %s failed: %s", message.channel, message.symbol,
                          message.error)
            else:
                self._received_since_connect = True
        elif isinstance(message, KrakenErrorReply):
            log.error("exchange error: %s", message.error)

    def _on_trades(self, message: KrakenTradeMessage, frame: str | bytes, now: float) -> None:
        trades = message.trades
        symbols = self._symbols
        now_us = int(self._wall_clock() * US_PER_SECOND)
        latest_us = now_us + int(self.policy.max_clock_lead_s * US_PER_SECOND)
        for trade in trades:
            if trade.symbol not in symbols:
                self._reject(KrakenFrameError(f"trade for unsubscribed {trade.symbol}"), frame)
                return
            if trade.ts_us > latest_us:
                self._reject(KrakenFrameError(
                    f"{trade.symbol} trade {trade.trade_id} stamped"
                    f" {(trade.ts_us - now_us) / US_PER_SECOND:.0f} s ahead of this machine's"
                    f" clock (more than {self.policy.max_clock_lead_s:g} s: a corrupt time, or"
                    " this clock is wrong)"), frame)
                return
        self._received_since_connect = True
        ready: list[Trade] = []
        sequencer = self.sequencer
        if message.kind == "snapshot":
            sequencer.snapshot(trades, ready)
        else:
            sequencer.updates(trades, now, ready)
        # _after_sequencer, inlined: this runs for every frame.
        if sequencer.holes:
            for hole in sequencer.take_holes():
                self._missed(hole)
        if ready:
            self._apply(ready)
        # Once per market minute (Kraken lists a frame's trades in time order: its last is the
        # feed's newest time), and after a snapshot, which may put a symbol back in step: the
        # symbols whose feed is whole up to now have quiet minutes to close. Bucket ends are
        # whole minutes, so the minute's first trade is as good a market time as its last.
        if trades and trades[-1].ts_us >= self._next_market_minute_us:
            newest = trades[-1].ts_us
            self._market_us = newest
            self._next_market_minute_us = newest - newest % US_PER_MINUTE + US_PER_MINUTE
            self._advance_market()
        elif message.kind == "snapshot":
            self._advance_market()

    def _advance_market(self) -> None:
        """Close the buckets of every symbol in step that ended by the feed's market time (less
        the evidence lag): a later trade of another symbol on this connection shows the feed
        was alive, so those without a trade of the symbol are quiet candles."""
        sequencer, aggregator = self.sequencer, self._aggregator
        until = self._market_us - QUIET_EVIDENCE_LAG_US
        closed: list[Candle] = []
        for symbol in self._settings.symbols:
            if sequencer.in_step(symbol):
                closed += aggregator.advance(symbol, until)
        if closed:
            # A quiet one is not cross-checked: the exchange's ohlc has a bar for a minute only
            # when it had trades.
            self._ohlc.cross_check([candle for candle in closed if not candle.quiet])
            self._writer.add((), closed)

    def _after_sequencer(self, ready: list[Trade]) -> None:
        """Hand on the holes the sequencer found, then apply the trades it released."""
        if self.sequencer.holes:
            for hole in self.sequencer.take_holes():
                self._missed(hole)
        if ready:
            self._apply(ready)

    def _missed(self, hole: MissedInterval) -> None:
        """A hole the sequencer found: queued for the backfill, else handed on (its minutes
        are then no quiet minutes: trades may be missing there)."""
        self.missed_intervals.append(hole)
        if self._backfill is not None:
            log.info("missed %d %s trades (ids %d..%d) between %d and %d us (%s): "
                     "backfilling them", hole.trades, hole.symbol, hole.first_trade_id,
                     hole.last_trade_id, hole.from_us, hole.to_us, hole.reason)
            self._fill_wanted.append(hole)
            return
        log.warning("missed %d %s trades (ids %d..%d) between %d and %d us (%s): "
                    "left to REST gap repair", hole.trades, hole.symbol, hole.first_trade_id,
                    hole.last_trade_id, hole.from_us, hole.to_us, hole.reason)
        self._aggregator.unknown(hole.symbol, hole.from_us, hole.to_us)
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
        ready: list[Trade] = []
        brought, left = self.sequencer.fill(hole, fetched, ready)
        for rest in left:
            log.warning("backfill left %d %s trades (ids %d..%d) missing: "
                        "left to REST gap repair", rest.trades, rest.symbol,
                        rest.first_trade_id, rest.last_trade_id)
            self._aggregator.unknown(rest.symbol, rest.from_us, rest.to_us)
            if self._on_missed is not None:
                self._on_missed(rest)
        if brought:
            log.info("backfilled %d %s trades (ids %d..%d)", brought, hole.symbol,
                     hole.first_trade_id, hole.last_trade_id)
        if ready:
            self._apply(ready)

    def _apply(self, trades: list[Trade]) -> None:
        aggregator = self._aggregator
        closed: list[Candle] = []
        for trade in trades:
            done = aggregator.add(trade)
            if done:
                closed += done
                self._ohlc.cross_check(done)
        stats = self.stats
        stats.trades += len(trades)
        stats.late_trades = aggregator.late_trades
        last = trades[-1].ts_us
        if last > stats.last_trade_ts_us:
            stats.last_trade_ts_us = last
        self._writer.add(trades, closed)

    def _reject(self, error: KrakenFrameError, frame: str | bytes) -> None:
        self.stats.rejected_frames += 1
        count = self.stats.rejected_frames
        if count <= _LOG_FIRST_REJECTED or count % _LOG_EVERY_REJECTED == 0:
            log.warning("rejected frame #%d: %s; frame %.200r", count, error, frame)

    async def _end_of_stream(self) -> None:
        while True:
            ready: list[Trade] = []
            self.sequencer.end(ready)
            self._after_sequencer(ready)
            if not self._fill_wanted:
                break
            # REST needs no socket: the last holes are backfilled too, and what their trades
            # held back goes out at the next turn.
            await self._fill_holes()
        self._advance_market()
        self._writer.finish(self._aggregator.flush())
