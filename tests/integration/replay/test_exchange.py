"""The replay exchange, driven by a real ``websockets`` client speaking Kraken v2."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from streamer.replay.exchange import ReplayExchange, run_replay_exchange
from streamer.replay.faults import FaultCounts, ReplayFaults
from triplegain_core.adapters.kraken.book import BookChecksumError, InvalidBookError, OrderBook
from triplegain_core.adapters.kraken.encode import encode_ping, encode_subscribe
from triplegain_core.adapters.kraken.messages import (
    KrakenBookMessage,
    KrakenErrorReply,
    KrakenFrameError,
    KrakenHeartbeat,
    KrakenInstrumentMessage,
    KrakenInstrumentPair,
    KrakenOhlcBar,
    KrakenOhlcMessage,
    KrakenPong,
    KrakenServerMessage,
    KrakenStatus,
    KrakenSubscribeAck,
    KrakenTicker,
    KrakenTickerMessage,
    KrakenTradeMessage,
)
from triplegain_core.adapters.kraken.parse import parse_server_message
from triplegain_core.marketdata.candles import build_candles
from triplegain_core.marketdata.sources import MarketSimulator, trades_from_file
from triplegain_core.model.market import TRADED_SYMBOLS, Side, Trade

START = 1_767_571_200_000_000


async def _recv(ws: ClientConnection, timeout: float = 5.0) -> KrakenServerMessage:
    return parse_server_message(await asyncio.wait_for(ws.recv(), timeout))


async def _collect_until_pong(ws: ClientConnection, exchange: ReplayExchange,
                              ping_id: int = 99) -> tuple[list[Trade], list[KrakenServerMessage]]:
    """Read until the pong of a ping sent once the replay finished: the server answers in
    order, so every trade it sent is in by then."""

    async def ping_when_finished() -> None:
        await exchange.finished.wait()
        await ws.send(encode_ping(ping_id))

    trades: list[Trade] = []
    others: list[KrakenServerMessage] = []
    pinger = asyncio.create_task(ping_when_finished())
    try:
        while True:
            message = await _recv(ws, 30)
            if isinstance(message, KrakenTradeMessage):
                trades.extend(message.trades)
            elif isinstance(message, KrakenPong) and message.req_id == ping_id:
                return trades, others
            else:
                others.append(message)
    finally:
        pinger.cancel()


def test_status_acks_errors_and_every_trade_once_in_order() -> None:
    source = list(MarketSimulator(seed=5, start_us=START, duration_s=1800))

    async def scenario() -> None:
        async with ReplayExchange(source, TRADED_SYMBOLS, speed=0) as exchange:
            assert exchange.url.startswith("ws://127.0.0.1:") and exchange.url.endswith("/v2")
            async with connect(exchange.url) as ws:
                status = await _recv(ws)
                assert isinstance(status, KrakenStatus) and status.system == "online"
                assert status.api_version == "v2"
                await ws.send(encode_subscribe([*TRADED_SYMBOLS, "XBT/USD"], req_id=42))
                acks = [await _recv(ws) for _ in range(4)]
                assert all(isinstance(ack, KrakenSubscribeAck) and ack.req_id == 42 for ack in acks)
                assert [(a.symbol, a.success) for a in acks] == [
                    *((s, True) for s in TRADED_SYMBOLS), ("XBT/USD", False)]
                assert acks[-1].error == "Currency pair not supported XBT/USD"
                assert all(a.time_in_us and a.time_out_us for a in acks)
                trades, others = await _collect_until_pong(ws, exchange)
        assert trades == source
        assert exchange.trades_sent == len(source)
        assert all(isinstance(m, KrakenHeartbeat) for m in others)

    asyncio.run(scenario())


def test_same_timestamp_trades_share_one_update() -> None:
    trades = [Trade("XRP/USDT", i, START + (i // 3) * 5_000, 0.5, 1.0, Side.BUY) for i in range(9)]

    async def scenario() -> None:
        async with ReplayExchange(trades, ["XRP/USDT"], batch_window_us=0) as exchange, connect(exchange.url) as ws:
            await _recv(ws)
            await ws.send(encode_subscribe(["XRP/USDT"]))
            await _recv(ws)
            sizes = [len((await _recv(ws)).trades) for _ in range(3)]
            assert sizes == [3, 3, 3]

    asyncio.run(scenario())


def test_ping_heartbeat_errors_and_snapshot() -> None:
    source = list(MarketSimulator(seed=1, start_us=START, duration_s=120, symbols=("BTC/USDT",)))

    async def scenario() -> None:
        async with ReplayExchange(source, ["BTC/USDT"], speed=0,
                                  heartbeat_interval_s=0.2) as exchange:
            async with connect(exchange.url) as ws:
                await _recv(ws)
                await ws.send(encode_ping(7))
                pong = await _recv(ws)
                assert isinstance(pong, KrakenPong) and pong.req_id == 7
                await ws.send("this is not JSON")
                assert isinstance(await _recv(ws), KrakenErrorReply)
                await ws.send(encode_subscribe(["BTC/USDT"], channel="level3", req_id=3))
                refused = await _recv(ws)
                assert isinstance(refused, KrakenSubscribeAck) and not refused.success
                await ws.send(encode_subscribe(["BTC/USDT"], req_id=4))
                assert (await _recv(ws)).success
                trades, _ = await _collect_until_pong(ws, exchange)
                assert trades == source
                # Idle after the replay: heartbeats keep coming, pings are still answered.
                assert isinstance(await _recv(ws, 2), KrakenHeartbeat)
                assert isinstance(await _recv(ws, 2), KrakenHeartbeat)
            # A late client asking for a snapshot gets Kraken's last 50 trades.
            async with connect(exchange.url) as late:
                await _recv(late)
                await late.send(encode_subscribe(["BTC/USDT"], snapshot=True))
                assert (await _recv(late)).success
                snapshot = await _recv(late)
                assert isinstance(snapshot, KrakenTradeMessage) and snapshot.kind == "snapshot"
                assert snapshot.trades == source[-50:]

    asyncio.run(scenario())


def test_paced_replay_follows_the_trade_clock() -> None:
    trades = [Trade("XRP/USDT", i, START + i * 100_000, 0.5, 1.0, Side.SELL) for i in range(6)]

    async def scenario() -> float:
        async with ReplayExchange(trades, ["XRP/USDT"], speed=2.0) as exchange, connect(exchange.url) as ws:
            await _recv(ws)
            await ws.send(encode_subscribe(["XRP/USDT"]))
            await _recv(ws)
            loop = asyncio.get_running_loop()
            first = await _recv(ws)
            started = loop.time()
            received = list(first.trades)
            while len(received) < len(trades):
                received.extend((await _recv(ws)).trades)
            assert received == trades
            return loop.time() - started

    # 0.5 s of trade time at twice real time: about 0.25 s (never sooner).
    assert asyncio.run(scenario()) >= 0.2


def test_real_trades_replay_exactly(shared_data: Path) -> None:
    source = list(trades_from_file(shared_data / "kraken_bch-eur_trades.csv", "XRP/USDT"))

    async def scenario() -> list[Trade]:
        async with ReplayExchange(source, ["XRP/USDT"]) as exchange, connect(exchange.url) as ws:
            await _recv(ws)
            await ws.send(encode_subscribe(["XRP/USDT"]))
            await _recv(ws)
            trades, _ = await _collect_until_pong(ws, exchange)
            return trades

    assert asyncio.run(scenario()) == source


def test_run_replay_exchange_serves_until_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    source = list(MarketSimulator(seed=2, start_us=START, duration_s=60, symbols=("XRP/BTC",)))

    async def scenario() -> tuple[int, int]:
        stop = asyncio.Event()
        server = asyncio.create_task(run_replay_exchange(source, ["XRP/BTC"], port=0, stop=stop))
        printed = ""
        while "ws://" not in printed:
            await asyncio.sleep(0.01)
            printed += capsys.readouterr().out
        url = next(word for word in printed.split() if word.startswith("ws://"))
        received = 0
        async with connect(url) as ws:
            await _recv(ws)
            await ws.send(encode_subscribe(["XRP/BTC"]))
            await _recv(ws)
            while received < len(source):
                received += len((await _recv(ws)).trades)
        stop.set()
        return received, await server

    assert asyncio.run(scenario()) == (len(source), len(source))


async def _subscribe_all(ws: ClientConnection, symbols: list[str], depth: int) -> None:
    await ws.send(encode_subscribe(symbols, snapshot=True, req_id=1))
    await ws.send(encode_subscribe(symbols, "book", snapshot=True, req_id=2, depth=depth))
    await ws.send(encode_subscribe(symbols, "ohlc", snapshot=False, req_id=3, interval=1))
    await ws.send(encode_subscribe(symbols, "ticker", req_id=4))
    await ws.send(encode_subscribe([], "instrument", snapshot=True, req_id=5))


@pytest.mark.parametrize("depth", [10, 25])
def test_every_channel_in_kraken_shapes(depth: int) -> None:
    """Book snapshots and updates that keep a local book valid under Kraken's checksum, ohlc
    candles equal to the candles of the replayed trades, ticker and instrument."""
    source = list(MarketSimulator(seed=8, start_us=START, duration_s=900))

    async def scenario() -> None:
        async with ReplayExchange(source, TRADED_SYMBOLS, speed=0) as exchange, connect(exchange.url) as ws:
            await _recv(ws)
            await _subscribe_all(ws, list(TRADED_SYMBOLS), depth)
            books = {s: OrderBook(s, depth) for s in TRADED_SYMBOLS}
            bars: dict[tuple[str, int], KrakenOhlcBar] = {}
            tickers: dict[str, KrakenTicker] = {}
            pairs: list[KrakenInstrumentPair] = []
            acks: list[KrakenSubscribeAck] = []
            updates = 0
            trades, others = await _collect_until_pong(ws, exchange)
            for message in others:
                if isinstance(message, KrakenBookMessage):
                    for data in message.books:
                        book = books[data.symbol]
                        apply = (book.apply_snapshot if message.kind == "snapshot"
                                 else book.apply_update)
                        apply(data.bids, data.asks, data.checksum, data.ts_us)
                        updates += message.kind == "update"
                        assert len(book.bids()) <= depth and len(book.asks()) <= depth
                elif isinstance(message, KrakenOhlcMessage):
                    bars.update({(b.symbol, b.interval_begin_us): b for b in message.bars})
                elif isinstance(message, KrakenTickerMessage):
                    tickers.update({t.symbol: t for t in message.tickers})
                elif isinstance(message, KrakenInstrumentMessage):
                    pairs.extend(message.pairs)
                elif isinstance(message, KrakenSubscribeAck):
                    acks.append(message)
        assert trades == source
        assert all(ack.success for ack in acks) and len(acks) == 4 * len(TRADED_SYMBOLS) + 1
        assert updates > 100 and all(book.valid for book in books.values())
        for symbol, book in books.items():
            top = book.top()
            assert top is not None and top.bid < top.ask
            last = [t for t in source if t.symbol == symbol][-1]
            assert top.bid < Decimal(repr(last.price)) < top.ask  # the book sits around it
            assert len(book.asks()) == depth
            assert (tickers[symbol].bid, tickers[symbol].ask) == (float(top.bid), float(top.ask))
            assert tickers[symbol].last == last.price
        offline = build_candles(source)
        assert {(c.symbol, c.open_time_us): (c.open, c.high, c.low, c.close, c.trade_count)
                for c in offline} == {
            key: (b.open, b.high, b.low, b.close, b.trades) for key, b in bars.items()}
        assert sorted(p.symbol for p in pairs) == sorted(TRADED_SYMBOLS)
        assert {p.symbol: p.price_precision for p in pairs}["BTC/USDT"] == 1

    asyncio.run(scenario())


def test_faults_are_injected_as_configured() -> None:
    """A plain client (no recovery) sees the faults: duplicated and missing trades, broken
    JSON, wrong book checksums, a dropped connection; the replay still ends."""
    source = list(MarketSimulator(seed=9, start_us=START, duration_s=1800,
                                  symbols=("XRP/USDT",)))
    faults = ReplayFaults(seed=3, drop_frame_rate=0.05, duplicate_frame_rate=0.05,
                          malformed_frame_rate=0.05, corrupt_checksum_rate=0.2,
                          recovery_grace_s=0.05)

    async def scenario() -> tuple[list[Trade], int, int, FaultCounts]:
        async with (ReplayExchange(source, ["XRP/USDT"], speed=0, faults=faults) as exchange,
                    connect(exchange.url) as ws):
            await _recv(ws)
            await ws.send(encode_subscribe(["XRP/USDT"], req_id=1))
            await ws.send(encode_subscribe(["XRP/USDT"], "book", snapshot=True, depth=10))
            book = OrderBook("XRP/USDT", 10)
            trades: list[Trade] = []
            broken = mismatches = 0

            async def ping_when_finished() -> None:
                await exchange.finished.wait()
                await ws.send(encode_ping(77))

            pinger = asyncio.create_task(ping_when_finished())
            while True:
                frame = await asyncio.wait_for(ws.recv(), 30)
                try:
                    message = parse_server_message(frame)
                except KrakenFrameError:
                    broken += 1
                    continue
                if isinstance(message, KrakenPong) and message.req_id == 77:
                    break
                if isinstance(message, KrakenTradeMessage):
                    trades.extend(message.trades)
                elif isinstance(message, KrakenBookMessage):
                    data = message.books[0]
                    apply = (book.apply_snapshot if message.kind == "snapshot"
                             else book.apply_update)
                    try:
                        apply(data.bids, data.asks, data.checksum)
                    except BookChecksumError:
                        mismatches += 1
                    except InvalidBookError:
                        pass  # this plain client never asks a fresh snapshot
            pinger.cancel()
            return trades, broken, mismatches, exchange.faults_injected

    trades, broken, mismatches, injected = asyncio.run(scenario())
    assert injected.frames_dropped and injected.frames_duplicated and injected.frames_malformed
    assert broken == injected.frames_malformed
    ids = [t.trade_id for t in trades]
    assert len(ids) > len(set(ids))  # duplicates arrived
    assert set(ids) < {t.trade_id for t in source}  # and some trades never did
    assert mismatches == 1  # the first corrupted checksum broke its book for good


def test_a_dropped_connection_pauses_the_replay_until_a_resubscribe() -> None:
    source = [Trade("XRP/USDT", i, START + i * 1000, 0.5, 1.0, Side.BUY) for i in range(1, 3001)]
    faults = ReplayFaults(drop_connection_every_s=0.3)

    async def scenario() -> tuple[list[Trade], int]:
        async with ReplayExchange(source, ["XRP/USDT"], speed=2.0, faults=faults) as exchange:
            received: dict[int, Trade] = {}
            connections = 0
            while len(received) < len(source):
                connections += 1
                try:
                    async with connect(exchange.url) as ws:
                        await _recv(ws)
                        await ws.send(encode_subscribe(["XRP/USDT"], snapshot=True))
                        while len(received) < len(source):
                            message = await _recv(ws)
                            if isinstance(message, KrakenTradeMessage):
                                received.update({t.trade_id: t for t in message.trades})
                except ConnectionClosed:
                    continue
            return [received[i] for i in sorted(received)], connections

    trades, connections = asyncio.run(scenario())
    # Trade time runs at twice real time (1.5 s for it all) while connections drop every
    # 0.3 s: several reconnections, and the snapshots filled every hole.
    assert connections >= 3
    assert trades == source
