"""A local exchange that speaks Kraken's WebSocket API v2 (public ``trade`` channel) and replays
a stream of trades: the streamer's stand-in for ``wss://ws.kraken.com/v2`` in tests and demos.

Per connection it sends ``status`` on connect, acks each symbol of a ``subscribe`` (unknown
symbols and channels get error acks), answers ``ping`` with ``pong``, and sends a ``heartbeat``
after about a second without any other message. The replay starts once a client holds a
subscription for every symbol of the replay, so no trade is lost; it then sends each trade once
to every subscriber of its symbol, consecutive trades of one symbol within ``batch_window_us``
of each other in one ``update`` message, as Kraken batches the trades of one match. When all
are sent, ``finished`` is set; the server keeps running (heartbeats, pings) until stopped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from triplegain_core.kraken_v2 import (
    TRADE_CHANNEL,
    KrakenFrameError,
    PingRequest,
    SubscribeRequest,
    encode_error,
    encode_heartbeat,
    encode_pong,
    encode_status,
    encode_subscribe_ack,
    encode_trades,
    parse_client_message,
    us_to_rfc3339,
)
from triplegain_core.market import US_PER_SECOND, Trade

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 1.0
SNAPSHOT_DEPTH = 50  # Kraken's trade snapshot: the last 50 trades
# Without pacing, yield to the event loop this often so pings and other clients get served.
_YIELD_EVERY = 64


class _Client:
    """One connection: its subscriptions and when it last heard from us."""

    def __init__(self, connection: ServerConnection, connection_id: int) -> None:
        self.connection = connection
        self.connection_id = connection_id
        self.symbols: set[str] = set()
        self.last_sent = time.monotonic()

    async def send(self, frame: str) -> None:
        self.last_sent = time.monotonic()
        await self.connection.send(frame)


class ReplayExchange:
    """Kraken v2 stand-in replaying ``trades`` (time-ordered) for ``symbols``.

    ``speed`` is a factor on the trades' own clock (2.0 = twice real time); ``None`` or 0
    replays as fast as the clients read. Use ``async with`` or ``start()`` / ``stop()``;
    ``url`` is known once started.
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
    ) -> None:
        if speed is not None and speed < 0:
            raise ValueError("speed must be >= 0 (0 or None: as fast as possible)")
        self._trades = trades
        self.symbols = tuple(symbols)
        self.speed = speed or None
        self._host, self._port = host, port
        self._batch_window_us = batch_window_us
        self._heartbeat_interval_s = heartbeat_interval_s
        self._clients: set[_Client] = set()
        self._connection_ids = itertools.count(1)
        self._recent = {symbol: deque(maxlen=SNAPSHOT_DEPTH) for symbol in self.symbols}
        self._ready = asyncio.Event()
        self.finished = asyncio.Event()
        self.trades_sent = 0
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

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
        self._tasks = [asyncio.create_task(self._replay()), asyncio.create_task(self._heartbeats())]
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
        client = _Client(connection, next(self._connection_ids))
        self._clients.add(client)
        try:
            await client.send(encode_status("online", client.connection_id))
            async for frame in connection:
                await self._answer(client, frame)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)

    async def _answer(self, client: _Client, frame: str | bytes) -> None:
        time_in = us_to_rfc3339(time.time_ns() // 1000)
        try:
            request = parse_client_message(frame)
        except KrakenFrameError as exc:
            await client.send(encode_error(f"Malformed request: {exc}", time_in=time_in))
            return
        if isinstance(request, PingRequest):
            await client.send(encode_pong(request.req_id, time_in))
            return
        await self._subscription(client, request, time_in)

    async def _subscription(self, client: _Client, request: SubscribeRequest, time_in: str) -> None:
        for symbol in request.symbols:
            if request.channel != TRADE_CHANNEL:
                error = f"Channel not supported by the replay exchange: {request.channel}"
            elif symbol not in self._recent:
                error = f"Currency pair not supported {symbol}"
            else:
                error = None
            if error is not None:
                await client.send(encode_error(error, request.method, request.req_id, symbol,
                                               time_in))
                continue
            if request.method == "subscribe":
                client.symbols.add(symbol)
            else:
                client.symbols.discard(symbol)
            await client.send(encode_subscribe_ack(symbol, request.channel, request.snapshot,
                                                   request.req_id, time_in, request.method))
            if request.method == "subscribe" and request.snapshot:
                await client.send(encode_trades(self._recent[symbol], kind="snapshot"))
        if client.symbols.issuperset(self.symbols):
            self._ready.set()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval_s / 4)
            quiet_since = time.monotonic() - self._heartbeat_interval_s
            for client in list(self._clients):
                if client.symbols and client.last_sent <= quiet_since:
                    try:
                        await client.send(encode_heartbeat())
                    except ConnectionClosed:
                        self._clients.discard(client)

    # --- the replay -------------------------------------------------------------------------

    async def _replay(self) -> None:
        await self._ready.wait()
        log.info("replay started")
        clock_start: tuple[float, int] | None = None  # (monotonic time, first trade's ts_us)
        for sent, batch in enumerate(self._batches()):
            if self.speed is not None:
                if clock_start is None:
                    clock_start = (time.monotonic(), batch[0].ts_us)
                trade_time_s = (batch[0].ts_us - clock_start[1]) / US_PER_SECOND
                due = clock_start[0] + trade_time_s / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif sent % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            await self._publish(batch)
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
        recent = self._recent.get(symbol)
        if recent is None:
            return  # a trade of a symbol the replay does not offer: nobody can subscribe to it
        frame = encode_trades(batch)
        for client in list(self._clients):
            if symbol in client.symbols:
                try:
                    await client.send(frame)
                except ConnectionClosed:
                    self._clients.discard(client)
        recent.extend(batch)
        self.trades_sent += len(batch)


async def run_replay_exchange(
    trades: Iterable[Trade],
    symbols: Sequence[str],
    host: str = "127.0.0.1",
    port: int = 8765,
    speed: float | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Serve the replay until ``stop`` is set (forever without one); returns trades sent."""
    async with ReplayExchange(trades, symbols, speed=speed, host=host, port=port) as exchange:
        print(f"replay exchange on {exchange.url} for {', '.join(symbols)}; "
              f"waiting for a subscriber to every symbol", flush=True)
        finished = asyncio.create_task(exchange.finished.wait())
        finished.add_done_callback(
            lambda task: task.cancelled()
            or print(f"replay finished: {exchange.trades_sent} trades sent", flush=True))
        try:
            await (stop.wait() if stop is not None else asyncio.Future())
        finally:
            finished.cancel()
        return exchange.trades_sent
