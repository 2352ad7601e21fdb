"""The replay exchange, driven by a real ``websockets`` client speaking Kraken v2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from streamer.replay_exchange import ReplayExchange, run_replay_exchange
from triplegain_core.kraken_v2 import (
    ErrorReply,
    Heartbeat,
    Pong,
    ServerMessage,
    Status,
    SubscribeAck,
    TradeMessage,
    encode_ping,
    encode_subscribe,
    parse_server_message,
)
from triplegain_core.market import TRADED_SYMBOLS, Side, Trade
from triplegain_core.market_sources import MarketSimulator, trades_from_file

START = 1_767_571_200_000_000


async def _recv(ws: ClientConnection, timeout: float = 5.0) -> ServerMessage:
    return parse_server_message(await asyncio.wait_for(ws.recv(), timeout))


async def _collect_until_pong(ws: ClientConnection, exchange: ReplayExchange,
                              ping_id: int = 99) -> tuple[list[Trade], list[ServerMessage]]:
    """Read until the pong of a ping sent once the replay finished: the server answers in
    order, so every trade it sent is in by then."""

    async def ping_when_finished() -> None:
        await exchange.finished.wait()
        await ws.send(encode_ping(ping_id))

    trades: list[Trade] = []
    others: list[ServerMessage] = []
    pinger = asyncio.create_task(ping_when_finished())
    try:
        while True:
            message = await _recv(ws, 30)
            if isinstance(message, TradeMessage):
                trades.extend(message.trades)
            elif isinstance(message, Pong) and message.req_id == ping_id:
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
                assert isinstance(status, Status) and status.system == "online"
                assert status.api_version == "v2"
                await ws.send(encode_subscribe([*TRADED_SYMBOLS, "XBT/USD"], req_id=42))
                acks = [await _recv(ws) for _ in range(4)]
                assert all(isinstance(ack, SubscribeAck) and ack.req_id == 42 for ack in acks)
                assert [(a.symbol, a.success) for a in acks] == [
                    *((s, True) for s in TRADED_SYMBOLS), ("XBT/USD", False)]
                assert acks[-1].error == "Currency pair not supported XBT/USD"
                assert all(a.time_in_us and a.time_out_us for a in acks)
                trades, others = await _collect_until_pong(ws, exchange)
        assert trades == source
        assert exchange.trades_sent == len(source)
        assert all(isinstance(m, Heartbeat) for m in others)

    asyncio.run(scenario())


def test_same_timestamp_trades_share_one_update() -> None:
    trades = [Trade("XRP/USDT", i, START + (i // 3) * 5_000, 0.5, 1.0, Side.BUY) for i in range(9)]

    async def scenario() -> None:
        async with ReplayExchange(trades, ["XRP/USDT"], batch_window_us=0) as exchange:
            async with connect(exchange.url) as ws:
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
                assert isinstance(pong, Pong) and pong.req_id == 7
                await ws.send("this is not JSON")
                assert isinstance(await _recv(ws), ErrorReply)
                await ws.send(encode_subscribe(["BTC/USDT"], channel="book", req_id=3))
                refused = await _recv(ws)
                assert isinstance(refused, SubscribeAck) and not refused.success
                await ws.send(encode_subscribe(["BTC/USDT"], req_id=4))
                assert (await _recv(ws)).success
                trades, _ = await _collect_until_pong(ws, exchange)
                assert trades == source
                # Idle after the replay: heartbeats keep coming, pings are still answered.
                assert isinstance(await _recv(ws, 2), Heartbeat)
                assert isinstance(await _recv(ws, 2), Heartbeat)
            # A late client asking for a snapshot gets Kraken's last 50 trades.
            async with connect(exchange.url) as late:
                await _recv(late)
                await late.send(encode_subscribe(["BTC/USDT"], snapshot=True))
                assert (await _recv(late)).success
                snapshot = await _recv(late)
                assert isinstance(snapshot, TradeMessage) and snapshot.kind == "snapshot"
                assert snapshot.trades == source[-50:]

    asyncio.run(scenario())


def test_paced_replay_follows_the_trade_clock() -> None:
    trades = [Trade("XRP/USDT", i, START + i * 100_000, 0.5, 1.0, Side.SELL) for i in range(6)]

    async def scenario() -> float:
        async with ReplayExchange(trades, ["XRP/USDT"], speed=2.0) as exchange:
            async with connect(exchange.url) as ws:
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
        async with ReplayExchange(source, ["XRP/USDT"]) as exchange:
            async with connect(exchange.url) as ws:
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
