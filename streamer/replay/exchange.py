"""A local exchange that speaks Kraken's WebSocket API v2 public channels and replays a stream
of trades: the streamer's stand-in for ``wss://ws.kraken.com/v2`` in tests and demos.

Per connection it sends ``status`` on connect, acks each symbol of a ``subscribe`` (unknown
symbols and channels get error acks), answers ``ping`` with ``pong``, and sends a ``heartbeat``
after about a second without any other message. Channels:

- ``trade``: each replayed trade once to every subscriber of its symbol, consecutive trades
  of one symbol within ``batch_window_us`` in one ``update``, as Kraken batches one match;
  ``snapshot: true`` sends the last 50 trades first.
- ``book`` (depth 10 or 25): the exchange has no order book to replay, so it derives one,
  deterministically, around the last trade price: levels one tick apart (four significant
  digits), the inside four ticks wide and re-centred when a trade prints outside it,
  quantities a hash of symbol and level, the two inside levels re-drawn at every batch.
  Snapshots and updates carry Kraken's CRC32 checksum.
  An update holds exactly the levels that changed in the subscriber's view (its depth).
- ``ohlc`` (interval 1): the forming 1-minute candle of the replayed trades after each batch.
- ``ticker``: last trade, the derived best bid/ask, statistics since the replay started.
- ``instrument``: a snapshot of the replayed pairs.

Replay clock. The replay runs only while every replayed symbol has a ``trade`` subscriber on a
connection that is not stalled: a dropped or stalled connection pauses it until the client
is back and subscribed again, so the trades sent while it was away are at most the few in
flight, and its resubscribe snapshot (50 trades) covers them. Pausing was chosen over
replaying on regardless because the stand-in has no REST history for a client to repair a
longer gap from in tests; the real exchange does not wait, which is what the streamer's
missed-interval hook (REST gap repair) is for. Likewise, after a lossy frame fault (see
:mod:`streamer.replay.faults`, a stall counts too) the replay lets one more batch of that
symbol go (the client needs it to see the gap), then holds before any batch that would push
the lost trades out of the last 50, until the client resubscribes with a snapshot (or
``recovery_grace_s`` passes).
When all trades are sent, ``finished`` is set; the server keeps running until stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from streamer.replay.faults import (
    NO_FAULTS,
    FaultCounts,
    FaultDice,
    FrameFate,
    ReplayFaults,
    malformed,
)
from streamer.replay.rest import ReplayRestExchange
from triplegain_core.adapters.kraken.book import KrakenBookLevel, book_checksum
from triplegain_core.adapters.kraken.encode import (
    encode_book,
    encode_error,
    encode_heartbeat,
    encode_instrument,
    encode_ohlc,
    encode_pong,
    encode_status,
    encode_subscribe_ack,
    encode_ticker,
    encode_trades,
)
from triplegain_core.adapters.kraken.messages import (
    BOOK_CHANNEL,
    INSTRUMENT_CHANNEL,
    OHLC_CHANNEL,
    TICKER_CHANNEL,
    TRADE_CHANNEL,
    KrakenBookData,
    KrakenFrameError,
    KrakenInstrumentPair,
    KrakenOhlcBar,
    KrakenPingRequest,
    KrakenSubscribeRequest,
    KrakenTicker,
    us_to_rfc3339,
)
from triplegain_core.adapters.kraken.parse import parse_client_message
from triplegain_core.model.market import INSTRUMENTS, US_PER_MINUTE, US_PER_SECOND, Trade

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 1.0
SNAPSHOT_DEPTH = 50  # Kraken's trade snapshot: the last 50 trades
REPLAY_BOOK_DEPTHS = (10, 25)
BOOK_LEVELS = 25
# Without pacing, yield to the event loop this often so pings and other clients get served.
_YIELD_EVERY = 16
_QTY_EXPONENT = Decimal("1e-8")
_LEVEL_CACHE = 4096
_HALF_SPREAD = 2  # ticks from the ladder's middle to the best bid and to the best ask
_PRICE_PRECISION = {"BTC/USDT": 1, "XRP/USDT": 5, "XRP/BTC": 8}


class _Client:
    """One connection: its subscriptions, faults and when it last heard from us."""

    def __init__(self, connection: ServerConnection, connection_id: int,
                 faults: ReplayFaults) -> None:
        self.connection = connection
        self.connection_id = connection_id
        self.symbols: set[str] = set()  # trade subscriptions
        self.books: dict[str, int] = {}  # symbol -> depth
        self.book_view: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
        self.ohlc: set[str] = set()
        self.tickers: set[str] = set()
        self.last_sent = time.monotonic()
        self.dice = FaultDice(faults, connection_id)
        # channel -> (a frame held back to swap with the channel's next frame, since when)
        self.held: dict[str, tuple[str, float]] = {}
        self.stalled_until = 0.0
        # symbol -> [trades lost in the first lost frame, trades published since, when]
        self.owed: dict[str, list[float]] = {}

    @property
    def stalled(self) -> bool:
        return time.monotonic() < self.stalled_until

    async def send(self, frame: str) -> None:
        if self.stalled:
            return
        self.last_sent = time.monotonic()
        await self.connection.send(frame)


class _SymbolMarket:
    """What the exchange derives from one symbol's replayed trades."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.recent: deque[Trade] = deque(maxlen=SNAPSHOT_DEPTH)
        self.last: Trade | None = None
        self.batches = 0
        self.bar: KrakenOhlcBar | None = None
        self._bar_value = 0.0  # sum of price * qty of the bar, for its vwap
        self.first_price = 0.0
        self.volume = self.value = 0.0
        self.low = math.inf
        self.high = 0.0
        self._seed = zlib.crc32(symbol.encode())
        self._levels: dict[tuple[int, Decimal], KrakenBookLevel] = {}
        self._tick = Decimal(0)
        self._middle = 0

    def add(self, batch: list[Trade]) -> None:
        for trade in batch:
            self._bar_add(trade)
            self.volume += trade.qty
            self.value += trade.price * trade.qty
            self.low = min(self.low, trade.price)
            self.high = max(self.high, trade.price)
        if not self.first_price:
            self.first_price = batch[0].price
        self.recent.extend(batch)
        self.last = batch[-1]
        self.batches += 1

    def _bar_add(self, trade: Trade) -> None:
        begin = trade.ts_us - trade.ts_us % US_PER_MINUTE
        bar = self.bar
        if bar is None or bar.interval_begin_us != begin:
            self._bar_value = trade.price * trade.qty
            self.bar = KrakenOhlcBar(self.symbol, trade.price, trade.price, trade.price, trade.price, 1,
                               trade.qty, trade.price, begin, 1, trade.ts_us)
            return
        self._bar_value += trade.price * trade.qty
        volume = bar.volume + trade.qty
        self.bar = KrakenOhlcBar(self.symbol, bar.open, max(bar.high, trade.price),
                           min(bar.low, trade.price), trade.price, bar.trades + 1, volume,
                           self._bar_value / volume, begin, 1, trade.ts_us)

    # --- the derived book -------------------------------------------------------------------

    def book(self) -> tuple[list[KrakenBookLevel], list[KrakenBookLevel]]:
        """(bids best first, asks best first), ``BOOK_LEVELS`` each; empty before any trade."""
        if self.last is None:
            return [], []
        price = self.last.price
        decimals = max(0, 3 - math.floor(math.log10(price)))
        tick = Decimal(1).scaleb(-decimals)
        index = round(price * 10**decimals)
        # The ladder re-centres only when a trade prints outside its inside spread (4 ticks
        # wide), as a real book mostly changes at the inside: updates stay small.
        if self._tick != tick or abs(index - self._middle) >= _HALF_SPREAD:
            self._tick, self._middle = tick, index
        middle = self._middle
        levels = min(BOOK_LEVELS, middle - _HALF_SPREAD)  # bids stay above zero
        bids = [self._level(middle - k, tick) for k in range(_HALF_SPREAD,
                                                              _HALF_SPREAD + levels)]
        asks = [self._level(middle + k, tick) for k in range(_HALF_SPREAD,
                                                              _HALF_SPREAD + BOOK_LEVELS)]
        return bids, asks

    def _level(self, index: int, tick: Decimal) -> KrakenBookLevel:
        # The two inside levels change with every batch; the rest only when the ladder moves
        # (so they are cached, by level and tick).
        inside = abs(index - self._middle) == _HALF_SPREAD
        key = (index, tick)
        if not inside:
            level = self._levels.get(key)
            if level is not None:
                return level
        salt = self.batches if inside else 0
        units = zlib.crc32(f"{self._seed}:{index}:{salt}".encode()) % 500_000_000 + 1_000_000
        level = KrakenBookLevel(index * tick, (Decimal(units) * _QTY_EXPONENT).quantize(_QTY_EXPONENT))
        if not inside:
            if len(self._levels) >= _LEVEL_CACHE:
                self._levels.clear()
            self._levels[key] = level
        return level

    def ticker(self, bid: KrakenBookLevel | None, ask: KrakenBookLevel | None) -> KrakenTicker:
        last = self.last
        assert last is not None
        change = last.price - self.first_price
        return KrakenTicker(self.symbol, float(bid.price) if bid else last.price,
                      float(bid.qty) if bid else 0.0, float(ask.price) if ask else last.price,
                      float(ask.qty) if ask else 0.0, last.price, self.volume,
                      self.value / self.volume if self.volume else 0.0, self.low, self.high,
                      change, 100.0 * change / self.first_price, last.ts_us)


@dataclass(frozen=True, slots=True)
class _Delivery:
    """A data frame for one client, and whether faults may touch it."""

    frame: str
    channel: str
    faultable: bool
    trade_symbol: str | None = None  # a trade frame of this symbol (a loss must be recovered)


class ReplayExchange:
    """Kraken v2 stand-in replaying ``trades`` (time-ordered) for ``symbols``.

    ``speed`` is a factor on the trades' own clock (2.0 = twice real time); ``None`` or 0
    replays as fast as the clients read. ``faults`` switches fault injection on
    (:class:`~streamer.replay.faults.ReplayFaults`); ``faults_injected`` counts what was done.
    ``trades_sent`` counts the trades published, ``trade_subscriptions`` the ``trade``
    subscriptions acknowledged (a client that came back shows there, even once the replay is
    over).
    Use ``async with`` or ``start()`` / ``stop()``; ``url`` is known once started.
    """

    def __init__(
        self,
        trades: Iterable[Trade],
        symbols: Sequence[str],
        speed: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        batch_window_us: int = 1000,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        *,
        faults: ReplayFaults = NO_FAULTS,
    ) -> None:
        if speed is not None and speed < 0:
            raise ValueError("speed must be >= 0 (0 or None: as fast as possible)")
        self._trades = trades
        self.symbols = tuple(symbols)
        self.speed = speed or None
        self._host, self._port = host, port
        self._batch_window_us = batch_window_us
        self._heartbeat_interval_s = heartbeat_interval_s
        self.faults = faults
        self.faults_injected = FaultCounts()
        self._clients: set[_Client] = set()
        # Held until done: the event loop keeps only a weak reference to a task.
        self._closing: set[asyncio.Task[None]] = set()
        self._connection_ids = itertools.count(1)
        self._markets = {symbol: _SymbolMarket(symbol) for symbol in self.symbols}
        self.finished = asyncio.Event()
        self.trades_sent = 0
        self.trade_subscriptions = 0
        self._playing = asyncio.Event()
        self._playing.set()
        self._hold_at: int | None = None
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def hold_at(self, ts_us: int) -> None:
        """Stop before the first trade at or after ``ts_us`` until :meth:`release`: the market's
        clock stands still there, as it must while a demo's models deliberate on it."""
        self._hold_at = ts_us

    @property
    def held(self) -> bool:
        """Whether the replay stands at its hold mark."""
        return not self._playing.is_set()

    def release(self) -> None:
        """Send trades again after a hold."""
        self._hold_at = None
        self._playing.set()

    @property
    def now_us(self) -> int:
        """The replayed market's present: the time of the last trade sent (0 before any), so
        a REST stand-in beside it serves no trade the stream has not printed yet."""
        return max((m.last.ts_us for m in self._markets.values() if m.last is not None),
                   default=0)

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/v2`` of the running server."""
        if self._server is None:
            raise RuntimeError("the replay exchange is not started")
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://{self._host}:{port}/v2"

    async def start(self) -> None:
        """Listen, and arm the replay (it waits for a subscriber to every symbol)."""
        # Compression off: on a local socket it only costs CPU on both sides.
        self._server = await serve(self._serve, self._host, self._port, compression=None)
        self._tasks = [asyncio.create_task(self._replay()), asyncio.create_task(self._ticks())]
        if self.faults.drop_connection_every_s or self.faults.stall_every_s:
            self._tasks.append(asyncio.create_task(self._connection_faults()))
        log.info("replay exchange listening on %s (%s)", self.url, ", ".join(self.symbols))

    async def stop(self) -> None:
        """Stop replaying, close every connection (code 1001) and the listening socket."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> ReplayExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- connections ------------------------------------------------------------------------

    async def _serve(self, connection: ServerConnection) -> None:
        client = _Client(connection, next(self._connection_ids), self.faults)
        self._clients.add(client)
        try:
            await client.send(encode_status("online", client.connection_id))
            async for frame in connection:
                await self._answer(client, frame)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)

    async def _connection_faults(self) -> None:
        """On the exchange's clock: drop, or stall, every open connection."""
        faults, counts = self.faults, self.faults_injected
        now = time.monotonic()
        next_drop = now + faults.drop_connection_every_s if faults.drop_connection_every_s else None
        next_stall = now + faults.stall_every_s if faults.stall_every_s else None
        while True:
            due = min(t for t in (next_drop, next_stall) if t is not None)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            if next_stall is not None and faults.stall_every_s is not None and now >= next_stall:
                next_stall = now + faults.stall_every_s
                for client in list(self._clients):
                    if not client.stalled:
                        client.stalled_until = now + faults.stall_for_s
                        counts.stalls += 1
                        # A stalled client may be closing when the stall ends (it took the
                        # silence for a dead connection): what is sent to it then is lost, so
                        # no more than a snapshot's worth goes before it resubscribes.
                        for symbol in client.symbols:
                            client.owed.setdefault(symbol, [0, 0, now])
            if next_drop is not None and faults.drop_connection_every_s is not None and now >= next_drop:
                next_drop = now + faults.drop_connection_every_s
                for client in list(self._clients):
                    counts.connections_dropped += 1
                    # In a task of its own: the close handshake must not hold the clock.
                    task = asyncio.create_task(
                        client.connection.close(1011, "replay fault: connection dropped"))
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)

    async def _answer(self, client: _Client, frame: str | bytes) -> None:
        time_in = us_to_rfc3339(time.time_ns() // 1000)
        try:
            request = parse_client_message(frame)
        except KrakenFrameError as exc:
            await client.send(encode_error(f"Malformed request: {exc}", time_in=time_in))
            return
        if isinstance(request, KrakenPingRequest):
            await client.send(encode_pong(request.req_id, time_in))
            return
        await self._subscription(client, request, time_in)

    def _refusal(self, request: KrakenSubscribeRequest, symbol: str | None) -> str | None:
        channel = request.channel
        if channel not in (TRADE_CHANNEL, BOOK_CHANNEL, OHLC_CHANNEL, TICKER_CHANNEL,
                           INSTRUMENT_CHANNEL):
            return f"Channel not supported by the replay exchange: {channel}"
        if channel == BOOK_CHANNEL and (request.depth or 10) not in REPLAY_BOOK_DEPTHS:
            return f"Book depth not supported by the replay exchange: {request.depth}"
        if channel == OHLC_CHANNEL and (request.interval or 1) != 1:
            return f"Interval not supported by the replay exchange: {request.interval}"
        if symbol is not None and symbol not in self._markets:
            return f"Currency pair not supported {symbol}"
        return None

    async def _subscription(self, client: _Client, request: KrakenSubscribeRequest, time_in: str) -> None:
        if request.channel == INSTRUMENT_CHANNEL and not request.symbols:
            error = self._refusal(request, None)
            await client.send(encode_subscribe_ack(None, INSTRUMENT_CHANNEL, request.snapshot,
                                                   request.req_id, time_in, request.method))
            if request.method == "subscribe" and error is None:
                await client.send(encode_instrument(self._instrument_pairs()))
            return
        for symbol in request.symbols:
            error = self._refusal(request, symbol)
            if error is not None:
                await client.send(encode_error(error, request.method, request.req_id, symbol,
                                               time_in))
                continue
            depth = (request.depth or 10) if request.channel == BOOK_CHANNEL else None
            interval = (request.interval or 1) if request.channel == OHLC_CHANNEL else None
            subscribe = request.method == "subscribe"
            self._set_subscription(client, request.channel, symbol, depth, subscribe)
            await client.send(encode_subscribe_ack(symbol, request.channel, request.snapshot,
                                                   request.req_id, time_in, request.method,
                                                   depth, interval))
            self.trade_subscriptions += subscribe and request.channel == TRADE_CHANNEL
            if subscribe:
                await self._snapshot(client, request, symbol)

    def _set_subscription(self, client: _Client, channel: str, symbol: str, depth: int | None,
                          subscribe: bool) -> None:
        if channel == TRADE_CHANNEL:
            (client.symbols.add if subscribe else client.symbols.discard)(symbol)
        elif channel == BOOK_CHANNEL:
            client.book_view.pop(symbol, None)
            if subscribe:
                client.books[symbol] = depth or 10
            else:
                client.books.pop(symbol, None)
        elif channel == OHLC_CHANNEL:
            (client.ohlc.add if subscribe else client.ohlc.discard)(symbol)
        elif channel == TICKER_CHANNEL:
            (client.tickers.add if subscribe else client.tickers.discard)(symbol)

    async def _snapshot(self, client: _Client, request: KrakenSubscribeRequest, symbol: str) -> None:
        market = self._markets[symbol]
        channel = request.channel
        if channel == TRADE_CHANNEL:
            if not client.stalled:  # the snapshot brings back what it lost (if it arrives)
                client.owed.pop(symbol, None)
            if request.snapshot:
                await client.send(encode_trades(market.recent, kind="snapshot"))
        elif channel == BOOK_CHANNEL and request.snapshot is not False:
            frame = self._book_frame(client, symbol, market.book(), snapshot=True)
            if frame is not None:
                await client.send(frame)
        elif channel == OHLC_CHANNEL and request.snapshot and market.bar is not None:
            await client.send(encode_ohlc([market.bar], kind="snapshot"))
        elif channel == TICKER_CHANNEL and request.snapshot and market.last is not None:
            bids, asks = market.book()
            await client.send(encode_ticker(
                [market.ticker(bids[0] if bids else None, asks[0] if asks else None)],
                kind="snapshot"))

    def _instrument_pairs(self) -> list[KrakenInstrumentPair]:
        pairs = []
        for symbol in self.symbols:
            instrument = INSTRUMENTS.get(symbol)
            base, quote = symbol.split("/", 1) if instrument is None else (
                instrument.base.value, instrument.quote.value)
            precision = _PRICE_PRECISION.get(symbol, 5)
            pairs.append(KrakenInstrumentPair(symbol, base, quote, "online", precision,
                                        10.0**-precision, 8, 1e-8, 1e-8, 0.5))
        return pairs

    async def _ticks(self) -> None:
        """Heartbeats to quiet subscribers; release reorder-held frames that waited too long."""
        while True:
            await asyncio.sleep(self._heartbeat_interval_s / 4)
            now = time.monotonic()
            quiet_since = now - self._heartbeat_interval_s
            for client in list(self._clients):
                try:
                    for channel, (_, since) in list(client.held.items()):
                        if now - since > 0.05:
                            await self._release_held(client, channel)
                    if (client.symbols or client.books) and client.last_sent <= quiet_since:
                        await client.send(encode_heartbeat())
                except ConnectionClosed:
                    self._clients.discard(client)

    # --- the replay -------------------------------------------------------------------------

    def _subscribed(self) -> bool:
        """Every replayed symbol has a trade subscriber that can hear."""
        live = [c for c in self._clients if not c.stalled]
        covered = set().union(*(c.symbols for c in live)) if live else set()
        return covered.issuperset(self.symbols)

    def _recoverable(self, symbol: str, trades: int) -> bool:
        """Whether publishing ``trades`` more of ``symbol`` keeps every client that lost some
        of them able to get them back from its 50-trade snapshot (one batch after a loss
        always goes, or the client could not see the gap)."""
        now = time.monotonic()
        grace = self.faults.recovery_grace_s
        for client in self._clients:
            owed = client.owed.get(symbol)
            if (owed is not None and owed[1] and owed[0] + owed[1] + trades > SNAPSHOT_DEPTH
                    and now - owed[2] < grace and not client.stalled):
                return False
        return True

    async def _replay(self) -> None:
        clock_start: tuple[float, int] | None = None  # (monotonic time, first trade's ts_us)
        started = False
        for sent, batch in enumerate(self._batches()):
            symbol = batch[0].symbol
            if self._hold_at is not None and batch[0].ts_us >= self._hold_at:
                self._playing.clear()
            if not (self._playing.is_set() and self._subscribed() and self._recoverable(symbol, len(batch))):
                paused = time.monotonic()
                while not (self._playing.is_set() and self._subscribed()
                           and self._recoverable(symbol, len(batch))):
                    await asyncio.sleep(0.005)
                log.debug("replay paused %.3f s (held, or waiting for subscribers)",
                          time.monotonic() - paused)
                if clock_start is not None:  # a pause does not count as replay time
                    clock_start = (clock_start[0] + time.monotonic() - paused, clock_start[1])
            if not started:
                started = True
                log.info("replay started")
            if self.speed is not None:
                if clock_start is None:
                    clock_start = (time.monotonic(), batch[0].ts_us)
                trade_time_s = (batch[0].ts_us - clock_start[1]) / US_PER_SECOND
                due = clock_start[0] + trade_time_s / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    await asyncio.sleep(0)
            elif sent % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            await self._publish(batch)
        for client in list(self._clients):
            try:
                for channel in list(client.held):
                    await self._release_held(client, channel)
            except ConnectionClosed:
                self._clients.discard(client)
        log.info("replay finished: %d trades sent", self.trades_sent)
        self.finished.set()

    def _batches(self) -> Iterable[list[Trade]]:
        """Consecutive trades of one symbol close in time, grouped as one message."""
        batch: list[Trade] = []
        window = self._batch_window_us
        for trade in self._trades:
            if batch and (trade.symbol != batch[0].symbol or trade.ts_us - batch[0].ts_us > window):
                yield batch
                batch = []
            batch.append(trade)
        if batch:
            yield batch

    async def _publish(self, batch: list[Trade]) -> None:
        symbol = batch[0].symbol
        market = self._markets.get(symbol)
        if market is None:
            return  # a trade of a symbol the replay does not offer: nobody can subscribe to it
        market.add(batch)
        trade_frame = encode_trades(batch)
        needs_book = any(symbol in c.books or symbol in c.tickers for c in self._clients)
        book = market.book() if needs_book else None
        ohlc_frame = encode_ohlc([market.bar]) if market.bar is not None else None
        ticker_frame = None
        if book is not None:
            bids, asks = book
            ticker_frame = encode_ticker([market.ticker(bids[0] if bids else None,
                                                        asks[0] if asks else None)])
        for client in list(self._clients):
            deliveries: list[_Delivery] = []
            if symbol in client.symbols:
                deliveries.append(_Delivery(trade_frame, TRADE_CHANNEL, True, symbol))
            if ohlc_frame is not None and symbol in client.ohlc:
                deliveries.append(_Delivery(ohlc_frame, OHLC_CHANNEL, False))
            if book is not None and symbol in client.books:
                frame = self._book_frame(client, symbol, book, snapshot=False)
                if frame is not None:
                    deliveries.append(_Delivery(frame, BOOK_CHANNEL, True))
            if ticker_frame is not None and symbol in client.tickers:
                deliveries.append(_Delivery(ticker_frame, TICKER_CHANNEL, False))
            try:
                for delivery in deliveries:
                    await self._deliver(client, delivery, len(batch))
            except ConnectionClosed:
                self._clients.discard(client)
        self.trades_sent += len(batch)

    def _book_frame(self, client: _Client, symbol: str,
                    book: tuple[list[KrakenBookLevel], list[KrakenBookLevel]], snapshot: bool) -> str | None:
        """The snapshot, or the update that brings the client's view of the book to ``book``
        (``None`` when nothing changed in its view)."""
        depth = client.books.get(symbol, 10)
        bids, asks = book[0][:depth], book[1][:depth]
        new = ({level.price: level.qty for level in bids},
               {level.price: level.qty for level in asks})
        checksum = book_checksum(asks, bids)
        old = client.book_view.get(symbol)
        client.book_view[symbol] = new
        last = self._markets[symbol].last
        ts_us = last.ts_us if last else 0
        if snapshot or old is None:
            return encode_book(KrakenBookData(symbol, tuple(bids), tuple(asks), checksum, ts_us),
                               kind="snapshot")
        changes = []
        for side_old, side_new in zip(old, new, strict=True):
            changed = [KrakenBookLevel(price, Decimal(0)) for price in side_old if price not in side_new]
            changed += [KrakenBookLevel(price, qty) for price, qty in side_new.items()
                        if side_old.get(price) != qty]
            changes.append(tuple(changed))
        if not changes[0] and not changes[1]:
            return None
        if client.dice.corrupt_checksum():
            self.faults_injected.checksums_corrupted += 1
            checksum ^= 1
        return encode_book(KrakenBookData(symbol, changes[0], changes[1], checksum, ts_us))

    async def _deliver(self, client: _Client, delivery: _Delivery, trades: int) -> None:
        symbol = delivery.trade_symbol
        if symbol is not None and symbol in client.owed:
            client.owed[symbol][1] += trades
        fate = client.dice.frame_fate() if delivery.faultable else FrameFate.DELIVER
        counts = self.faults_injected
        frame = delivery.frame
        if client.stalled and symbol is not None and symbol not in client.owed:
            client.owed[symbol] = [trades, 0, time.monotonic()]  # a stall swallows it too
        if fate is FrameFate.DROP or fate is FrameFate.MALFORM:
            if symbol is not None and symbol not in client.owed:
                client.owed[symbol] = [trades, 0, time.monotonic()]
            if fate is FrameFate.DROP:
                counts.frames_dropped += 1
                return
            counts.frames_malformed += 1
            frame = malformed(frame)
        channel = delivery.channel
        if fate is FrameFate.REORDER and channel not in client.held:
            counts.frames_reordered += 1
            client.held[channel] = (frame, time.monotonic())
            return
        await client.send(frame)
        if fate is FrameFate.DUPLICATE:
            counts.frames_duplicated += 1
            await client.send(frame)
        await self._release_held(client, channel)  # swaps places with the channel's next frame

    @staticmethod
    async def _release_held(client: _Client, channel: str) -> None:
        held = client.held.pop(channel, None)
        if held is not None:
            await client.send(held[0])


async def run_replay_exchange(
    trades: Iterable[Trade],
    symbols: Sequence[str],
    host: str = "127.0.0.1",
    port: int = 8765,
    speed: float | None = None,
    stop: asyncio.Event | None = None,
    *,
    faults: ReplayFaults = NO_FAULTS,
    rest_port: int | None = None,
) -> int:
    """Serve the replay until ``stop`` is set (forever without one); returns trades sent.

    With ``rest_port``, Kraken's public REST (:class:`~streamer.replay.rest.ReplayRestExchange`)
    is served beside it on the trades replayed so far, for the streamer's gap repair."""
    if rest_port is not None:
        trades = list(trades)  # played twice over: the stream and the REST history
    async with contextlib.AsyncExitStack() as servers:
        exchange = await servers.enter_async_context(ReplayExchange(
            trades, symbols, speed=speed, host=host, port=port, faults=faults))
        print(f"replay exchange on {exchange.url} for {', '.join(symbols)}; "
              f"waiting for a subscriber to every symbol", flush=True)
        if rest_port is not None:
            rest = await servers.enter_async_context(ReplayRestExchange(
                trades, symbols, host=host, port=rest_port, now_us=lambda: exchange.now_us))
            print(f"Kraken REST stand-in on {rest.url}", flush=True)
        finished = asyncio.create_task(exchange.finished.wait())
        finished.add_done_callback(
            lambda task: task.cancelled()
            or print(f"replay finished: {exchange.trades_sent} trades sent", flush=True))
        try:
            await (stop.wait() if stop is not None else asyncio.Future())
        finally:
            finished.cancel()
        return exchange.trades_sent
