"""The Kraken REST stand-in, driven by the real ccxt ``kraken`` client (and by aiohttp for the
raw wire format)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import ccxt
import ccxt.async_support as ccxt_async
import pytest

from streamer.replay.rest import (
    MAX_OHLC_ROWS,
    ReplayRestExchange,
    RestFault,
    run_replay_rest,
)
from triplegain_core.adapters.kraken.rest import ExchangeRestConfig, ExchangeRestError, RestMarketData
from triplegain_core.marketdata.candles import build_candles
from triplegain_core.marketdata.sources import MarketSimulator
from triplegain_core.model.market import TRADED_SYMBOLS, US_PER_MINUTE, Side, Trade

START = 1_767_571_200_000_000  # 2026-01-05 00:00 UTC
HOURS = 3
_T = TypeVar("_T")


def _market(hours: int = HOURS) -> list[Trade]:
    return list(MarketSimulator(seed=5, start_us=START, duration_s=hours * 3600))


def _kraken(url: str) -> ccxt_async.kraken:
    exchange = ccxt_async.kraken({"enableRateLimit": True, "rateLimit": 1,
                                  "enableLastJsonResponse": True})
    exchange.urls["api"] = {**exchange.urls["api"], "public": url, "private": url}
    return exchange


def _with_kraken(trades: list[Trade], scenario: Callable[[ReplayRestExchange, ccxt_async.kraken],
                                                         Awaitable[_T]], **kwargs: object) -> _T:
    async def run() -> _T:
        async with ReplayRestExchange(trades, TRADED_SYMBOLS, **kwargs) as server:
            exchange = _kraken(server.url)
            try:
                return await scenario(server, exchange)
            finally:
                await exchange.close()

    return asyncio.run(run())


def _config(url: str, **overrides: object) -> ExchangeRestConfig:
    return ExchangeRestConfig(base_url=url, rate_limit_ms=1, backoff_s=0.001, **overrides)


def test_load_markets_maps_kraken_pairs_to_our_symbols() -> None:
    async def scenario(server: ReplayRestExchange, exchange: ccxt_async.kraken) -> dict:
        return await exchange.load_markets()

    markets = _with_kraken(_market(1), scenario)

    assert set(markets) == set(TRADED_SYMBOLS)
    assert markets["BTC/USDT"]["id"] == "XBTUSDT"
    assert markets["XRP/BTC"]["id"] == "XXRPXXBT"
    assert markets["XRP/BTC"]["base"] == "XRP" and markets["XRP/BTC"]["quote"] == "BTC"
    assert markets["BTC/USDT"]["precision"]["price"] == pytest.approx(0.1)
    assert all(market["active"] and market["spot"] for market in markets.values())


def test_trade_pages_give_back_the_replayed_history_exactly() -> None:
    trades = _market()

    async def scenario(server: ReplayRestExchange, exchange: ccxt_async.kraken) -> dict:
        got: dict[str, list[Trade]] = {}
        async with RestMarketData(_config(server.url, page_size=250)) as rest:
            for symbol in TRADED_SYMBOLS:
                got[symbol] = [t async for page in rest.trade_pages(
                    symbol, START, START + HOURS * 60 * US_PER_MINUTE) for t in page.trades]
        return got

    got = _with_kraken(trades, scenario)

    for symbol in TRADED_SYMBOLS:
        expected = [t for t in trades if t.symbol == symbol]
        assert len(expected) > 250 * 4  # several pages
        assert got[symbol] == expected  # microsecond times, ids, sides: all exact


def test_trades_cursor_is_exclusive_nanoseconds_and_seconds_are_accepted() -> None:
    trades = _market(1)
    xrp = [t for t in trades if t.symbol == "XRP/USDT"]

    async def scenario(server: ReplayRestExchange, exchange: ccxt_async.kraken) -> tuple:
        first = await exchange.fetch_trades("XRP/USDT", params={"since": str(START * 1000),
                                                                "count": 10})
        cursor = exchange.last_json_response["result"]["last"]
        second = await exchange.fetch_trades("XRP/USDT", params={"since": cursor, "count": 10})
        by_seconds = await exchange.fetch_trades("XRP/USDT", since=(START + US_PER_MINUTE) // 1000)
        return first, cursor, second, by_seconds

    first, cursor, second, by_seconds = _with_kraken(trades, scenario)

    assert [int(t["id"]) for t in first] == [t.trade_id for t in xrp[:10]]
    assert int(cursor) == xrp[9].ts_us * 1000
    assert [int(t["id"]) for t in second] == [t.trade_id for t in xrp[10:20]]
    assert int(by_seconds[0]["id"]) == next(
        t.trade_id for t in xrp if t.ts_us >= START + US_PER_MINUTE)


def test_fetch_ohlcv_matches_candles_built_from_the_trades() -> None:
    trades = _market(13)  # longer than 720 minutes: only the most recent 720 are served
    btc = [t for t in trades if t.symbol == "BTC/USDT"]
    candles = build_candles(btc)

    async def scenario(server: ReplayRestExchange, exchange: ccxt_async.kraken) -> tuple:
        recent = await exchange.fetch_ohlcv("BTC/USDT", "1m")
        since = await exchange.fetch_ohlcv("BTC/USDT", "1m",
                                           since=candles[-10].open_time_us // 1000)
        hourly = await exchange.fetch_ohlcv("BTC/USDT", "1h")
        return recent, since, hourly

    recent, since, hourly = _with_kraken(trades, scenario)

    assert len(recent) == MAX_OHLC_ROWS
    expected = [[c.open_time_us // 1000, c.open, c.high, c.low, c.close, c.volume]
                for c in candles[-MAX_OHLC_ROWS:]]
    assert recent == expected
    assert [row[0] for row in since] == [c.open_time_us // 1000 for c in candles[-10:]]
    assert len(hourly) == 13
    first_hour = [t for t in btc if t.ts_us < START + 60 * US_PER_MINUTE]
    assert hourly[0][1:5] == [first_hour[0].price, max(t.price for t in first_hour),
                              min(t.price for t in first_hour), first_hour[-1].price]


def test_only_trades_printed_by_now_are_served() -> None:
    trades = _market(1)
    now_us = START + 10 * US_PER_MINUTE + 30 * 1_000_000

    async def scenario(server: ReplayRestExchange, exchange: ccxt_async.kraken) -> tuple:
        recent = await exchange.fetch_trades("XRP/BTC")
        ohlcv = await exchange.fetch_ohlcv("XRP/BTC", "1m")
        return recent, ohlcv

    recent, ohlcv = _with_kraken(trades, scenario, now_us=lambda: now_us)

    printed = [t for t in trades if t.symbol == "XRP/BTC" and t.ts_us <= now_us]
    assert [int(t["id"]) for t in recent] == [t.trade_id for t in printed]
    assert ohlcv[-1][0] == (now_us - now_us % US_PER_MINUTE) // 1000  # the forming candle


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (RestFault.INTERNAL_ERROR, ccxt.ExchangeNotAvailable),
        (RestFault.RATE_LIMIT, ccxt.DDoSProtection),
        (RestFault.HTTP_500, ccxt.ExchangeNotAvailable),
        (RestFault.HTTP_429, ccxt.RateLimitExceeded),
    ],
)
def test_injected_faults_reach_ccxt_as_its_errors(fault: RestFault, error: type) -> None:
    async def scenario(server: ReplayRestExchange, exchange: ccxt_async.kraken) -> list:
        await exchange.load_markets()
        server.inject(fault, endpoint="Trades")
        with pytest.raises(error):
            await exchange.fetch_trades("BTC/USDT")
        return await exchange.fetch_trades("BTC/USDT")  # one fault only: the next call works

    assert _with_kraken(_market(1), scenario)


def test_adapter_retries_through_faults_and_gives_up_when_they_persist() -> None:
    trades = _market(1)

    async def scenario(server: ReplayRestExchange, exchange: ccxt_async.kraken) -> tuple:
        for fault in (RestFault.HTTP_429, RestFault.RATE_LIMIT, RestFault.HTTP_500,
                      RestFault.INTERNAL_ERROR):
            server.inject(fault, endpoint="Trades")
        async with RestMarketData(_config(server.url, max_retries=4)) as rest:
            page = await rest.trades_page("BTC/USDT", START * 1000)
            stats = rest.stats
        server.inject(RestFault.HTTP_429, times=3, endpoint="Trades")
        async with RestMarketData(_config(server.url, max_retries=2)) as rest:
            with pytest.raises(ExchangeRestError, match="after 2 retries"):
                await rest.trades_page("BTC/USDT", START * 1000)
        return page, stats, server.faults_served

    page, stats, served = _with_kraken(trades, scenario)

    assert page.trades == tuple(t for t in trades if t.symbol == "BTC/USDT")[:len(page.trades)]
    assert len(page.trades) > 0
    assert (stats.retries, stats.rate_limited, stats.unavailable) == (4, 2, 2)
    assert served[RestFault.HTTP_429] == 4 and served[RestFault.INTERNAL_ERROR] == 1


def test_kraken_envelope_on_the_wire() -> None:
    async def scenario(server: ReplayRestExchange, exchange: ccxt_async.kraken) -> list:
        async with aiohttp.ClientSession() as session:
            answers = []
            for path in ("Trades?pair=NOPE", "Trades?pair=XBTUSDT&since=abc",
                         "Trades?pair=XBTUSDT&count=2", "OHLC?pair=XRPXBT&interval=7",
                         "Time", "SystemStatus"):
                async with session.get(f"{server.url}/0/public/{path}") as response:
                    answers.append(await response.json())
            return answers

    unknown, bad_since, two, bad_interval, now, status = _with_kraken(_market(1), scenario)

    assert unknown == {"error": ["EQuery:Unknown asset pair"]}
    assert bad_since == {"error": ["EGeneral:Invalid arguments:since"]}
    assert two["error"] == [] and len(two["result"]["XBTUSDT"]) == 2
    row = two["result"]["XBTUSDT"][-1]
    assert [type(v) for v in row] == [str, str, float, str, str, str, int]
    assert two["result"]["last"] == str(round(row[2] * 1_000_000) * 1000)
    assert bad_interval == {"error": ["EGeneral:Invalid arguments:interval"]}
    assert now["error"] == [] and now["result"]["unixtime"] > START // 1_000_000
    assert status["result"]["status"] == "online"


def test_run_replay_rest_serves_until_stopped(unused_port: int) -> None:
    async def scenario() -> int:
        stop = asyncio.Event()
        server = asyncio.create_task(
            run_replay_rest(_market(1), TRADED_SYMBOLS, port=unused_port, stop=stop))
        exchange = _kraken(f"http://127.0.0.1:{unused_port}")
        try:
            for _ in range(100):  # until it listens
                try:
                    trades = await exchange.fetch_trades("XRP/USDT")
                    break
                except ccxt.NetworkError:
                    await asyncio.sleep(0.05)
        finally:
            await exchange.close()
        stop.set()
        await asyncio.wait_for(server, 5)
        return len(trades)

    assert asyncio.run(scenario()) > 0


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_exchange_without_a_trade_cursor_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no trade-history cursor"):
        ExchangeRestConfig(exchange_id="binance")


def test_a_malformed_trade_row_is_counted_and_the_rest_of_the_page_kept() -> None:
    trades = _market(1)
    btc = tuple(t for t in trades if t.symbol == "BTC/USDT")

    async def scenario(server: ReplayRestExchange, exchange: ccxt_async.kraken) -> tuple:
        server.inject(RestFault.MALFORMED_TRADE)
        async with RestMarketData(_config(server.url, page_size=20)) as rest:
            page = await rest.trades_page("BTC/USDT", START * 1000)
            return page, rest.stats.rejected_rows

    page, rejected = _with_kraken(trades, scenario)

    assert rejected == 1
    assert page.trades == btc[1:20]
    assert page.cursor_ns == btc[19].ts_us * 1000


def test_an_unparsable_page_is_a_clear_error() -> None:
    async def scenario(server: ReplayRestExchange, exchange: ccxt_async.kraken) -> None:
        server.inject(RestFault.UNPARSABLE_TRADES)
        async with RestMarketData(_config(server.url)) as rest:
            with pytest.raises(ExchangeRestError, match="malformed answer"):
                await rest.trades_page("BTC/USDT", START * 1000)
            # The next page is fine again: the client still works.
            assert (await rest.trades_page("BTC/USDT", START * 1000)).trades

    _with_kraken(_market(1), scenario)


def test_quiet_intervals_are_kraken_rows_flat_at_the_close_before() -> None:
    """Three trades with quiet minutes around them: no row before the pair's first trade, then
    each quiet minute (after a trade, and after the last one up to the forming interval) is
    Kraken's row for it: open = high = low = close = the close before, vwap and volume 0,
    count 0; the 5-minute rows follow the same rule."""
    trades = [Trade("XRP/BTC", 1, START + 2 * US_PER_MINUTE + 5, 2e-5, 10.0, Side.BUY),
              Trade("XRP/BTC", 2, START + 2 * US_PER_MINUTE + 9, 3e-5, 5.0, Side.SELL),
              Trade("XRP/BTC", 3, START + 6 * US_PER_MINUTE + 1, 4e-5, 1.0, Side.BUY)]
    now_us = START + 12 * US_PER_MINUTE + 30 * 1_000_000

    async def scenario(server: ReplayRestExchange, exchange: ccxt_async.kraken) -> tuple:
        await exchange.fetch_ohlcv("XRP/BTC", "1m")
        minutes = exchange.last_json_response["result"]["XXRPXXBT"]
        await exchange.fetch_ohlcv("XRP/BTC", "5m")
        fives = exchange.last_json_response["result"]["XXRPXXBT"]
        return minutes, fives

    minutes, fives = _with_kraken(trades, scenario, now_us=lambda: now_us)

    start_s = START // 1_000_000
    assert [row[0] for row in minutes] == [start_s + 60 * m for m in range(2, 13)]
    assert minutes[0] == [start_s + 120, repr(2e-5), repr(3e-5), repr(2e-5), repr(3e-5),
                          repr((2e-5 * 10 + 3e-5 * 5) / 15), repr(15.0), 2]
    quiet = [start_s + 60 * m for m in (3, 4, 5, 7, 8, 9, 10, 11, 12)]
    for row in minutes:
        if row[0] in quiet:
            close = repr(3e-5) if row[0] < start_s + 360 else repr(4e-5)
            assert row[1:] == [close, close, close, close, "0.000000", "0.00000000", 0]
    assert [row[0] for row in fives] == [start_s, start_s + 300, start_s + 600]
    assert fives[2][1:] == [repr(4e-5)] * 4 + ["0.000000", "0.00000000", 0]
