"""A quiet market from real trades, and the REST stand-in's own candles of it.

:func:`quiet_market`: the real XRP/ETH trades of ``../shared/data`` standing for XRP/USDT (a third
of their minutes have no trade), with every 40th of them standing for XRP/BTC, renumbered: a pair
quiet for most minutes, whose quiet stretches inside the run and after its last trade are proven
by its own ids and by the other pair's trades. :func:`rest_ohlc` reads the Kraken OHLC rows the
REST stand-in serves for them (Kraken's convention: a quiet interval is flat at the close before
it, volume 0, count 0), paging its 720-row window through the replayed market's time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiohttp

from streamer.replay.rest import KRAKEN_PAIRS, MAX_OHLC_ROWS, ReplayRestExchange
from triplegain_core.marketdata.sources import trades_from_file
from triplegain_core.model.market import US_PER_MINUTE, US_PER_SECOND, Candle, Trade

SYMBOLS = ("XRP/USDT", "XRP/BTC")
THIN = 40


def quiet_market(shared_data: Path) -> list[Trade]:
    """The two pairs' trades, in time order."""
    busy = list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", "XRP/USDT"))
    quiet = [dataclasses.replace(t, symbol="XRP/BTC", trade_id=i + 1, price=t.price / 30_000)
             for i, t in enumerate(busy[::THIN])]
    return sorted([*busy, *quiet], key=lambda t: (t.ts_us, t.symbol, t.trade_id))


def rest_ohlc(trades: list[Trade], symbol: str) -> dict[int, Candle]:
    """The stand-in's closed 1m OHLC rows of ``symbol`` over the whole market, by open time."""
    first = min(t.ts_us for t in trades)
    last = max(t.ts_us for t in trades)
    now = [first]

    async def read() -> dict[int, Candle]:
        rows: dict[int, Candle] = {}
        async with ReplayRestExchange(trades, SYMBOLS, now_us=lambda: now[0]) as server, \
                aiohttp.ClientSession() as session:
            minute = first - first % US_PER_MINUTE
            while minute <= last + MAX_OHLC_ROWS * US_PER_MINUTE:
                now[0] = minute + 59 * US_PER_SECOND
                async with session.get(f"{server.url}/0/public/OHLC", params={
                        "pair": KRAKEN_PAIRS[symbol].pair_id, "interval": "1"}) as answer:
                    body = await answer.json()
                assert body["error"] == [], body
                (series,) = [value for key, value in body["result"].items() if key != "last"]
                for row in series[:-1]:  # the last interval is still forming
                    time_s, open_, high, low, close, _vwap, volume, count = row
                    rows[time_s * US_PER_SECOND] = Candle(
                        symbol, "1m", time_s * US_PER_SECOND, float(open_), float(high),
                        float(low), float(close), float(volume), count)
                minute += (MAX_OHLC_ROWS - 1) * US_PER_MINUTE
        return rows

    return asyncio.run(read())
