"""A local stand-in for Kraken's public REST API, serving the history of a replayed market.

It answers what ccxt's ``kraken`` class calls for ``load_markets`` (``/0/public/Assets``,
``/0/public/AssetPairs``), ``fetch_trades`` (``/0/public/Trades``), ``fetch_ohlcv``
(``/0/public/OHLC``), ``fetch_time`` and ``fetch_status`` (``Time``, ``SystemStatus``), in
Kraken's envelope ``{"error": [], "result": {...}}``, from the same :class:`Trade` sequence the
WebSocket replay exchange plays, so a client backfilling over REST sees the replayed market.

Kraken's rules it keeps: ``Trades`` pages at most ``count`` (<= 1000) trades strictly after
``since`` (seconds, or the nanosecond cursor ``result.last`` of the previous page); ``OHLC``
returns at most the 720 most recent intervals, the last one still forming, rows
``[time, open, high, low, close, vwap, volume, count]`` after ``since`` (exclusive), with
``last`` the start of the last closed interval. An interval without trades is Kraken's quiet
row: open = high = low = close = the close before it, vwap and volume 0, count 0 (none before
the pair's first trade). One simplification: a ``Trades`` page never splits trades of one
timestamp, so the exclusive cursor cannot skip one.

Faults on demand (:meth:`ReplayRestExchange.inject`): Kraken-style errors in a 200 answer
(``EGeneral:Internal error``, ``EAPI:Rate limit exceeded``), HTTP 500 / 429, and broken
trade rows.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from email.utils import formatdate
from enum import StrEnum
from typing import Any

from aiohttp import web

from triplegain_core.model.market import US_PER_MINUTE, US_PER_SECOND, Trade

log = logging.getLogger(__name__)

MAX_TRADES_PER_PAGE = 1000
MAX_OHLC_ROWS = 720
OHLC_INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
_NS_PER_US = 1000
# A ``since`` below this is in seconds (Kraken accepts both), above it the nanosecond cursor.
_SECONDS_CEILING = 10**11


@dataclass(frozen=True, slots=True)
class KrakenPair:
    """How Kraken's REST API names and describes one traded pair."""

    symbol: str  # TripleGain / ccxt spelling, e.g. BTC/USDT
    pair_id: str  # the key of AssetPairs and of Trades/OHLC results
    altname: str
    wsname: str
    base: str
    quote: str
    pair_decimals: int
    lot_decimals: int
    ordermin: str
    costmin: str


KRAKEN_PAIRS: dict[str, KrakenPair] = {
    pair.symbol: pair for pair in (
        KrakenPair("BTC/USDT", "XBTUSDT", "XBTUSDT", "XBT/USDT", "XXBT", "USDT", 1, 8,
                   "0.00005", "0.5"),
        KrakenPair("XRP/USDT", "XRPUSDT", "XRPUSDT", "XRP/USDT", "XXRP", "USDT", 5, 8,
                   "10", "0.5"),
        KrakenPair("XRP/BTC", "XXRPXXBT", "XRPXBT", "XRP/XBT", "XXRP", "XXBT", 8, 8,
                   "10", "0.00002"),
    )
}
# Asset id -> (altname, decimals, display_decimals), as /0/public/Assets describes them.
KRAKEN_ASSETS: dict[str, tuple[str, int, int]] = {
    "XXBT": ("XBT", 10, 5),
    "XXRP": ("XRP", 8, 5),
    "USDT": ("USDT", 8, 4),
}


class RestFault(StrEnum):
    """A failure the stand-in can serve instead of an answer."""

    INTERNAL_ERROR = "internal_error"  # 200, {"error": ["EGeneral:Internal error"]}
    RATE_LIMIT = "rate_limit"  # 200, {"error": ["EAPI:Rate limit exceeded"]}
    HTTP_500 = "http_500"
    HTTP_429 = "http_429"
    MALFORMED_TRADE = "malformed_trade"  # a Trades page whose first row has no trade id
    UNPARSABLE_TRADES = "unparsable_trades"  # a Trades page whose first row has no valid time


# Faults breaking the first row of a Trades page: (column, value put there).
_ROW_FAULTS = {
    RestFault.MALFORMED_TRADE: (6, None),
    RestFault.UNPARSABLE_TRADES: (2, "not-a-time"),
}
_FAULT_ERRORS = {
    RestFault.INTERNAL_ERROR: "EGeneral:Internal error",
    RestFault.RATE_LIMIT: "EAPI:Rate limit exceeded",
}


class _KrakenError(Exception):
    """An error answered in Kraken's envelope with HTTP 200."""


class _SymbolHistory:
    """One symbol's trades in (time, id) order, with their times for bisection."""

    def __init__(self, trades: list[Trade]) -> None:
        self.trades = sorted(trades, key=lambda t: (t.ts_us, t.trade_id))
        self.times_us = [t.ts_us for t in self.trades]

    def visible(self, now_us: int) -> int:
        """How many trades have printed at ``now_us``."""
        return bisect.bisect_right(self.times_us, now_us)


def _decimal_arg(value: str | None, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise _KrakenError(f"EGeneral:Invalid arguments:{name}") from exc
    if not number.is_finite() or number < 0:
        raise _KrakenError(f"EGeneral:Invalid arguments:{name}")
    return number


def _since_ns(value: str | None) -> int | None:
    """Kraken's ``since``: seconds (possibly fractional) or a nanosecond cursor."""
    number = _decimal_arg(value, "since")
    if number is None:
        return None
    if number < _SECONDS_CEILING:
        return int(number * 1_000_000_000)
    return int(number)


class ReplayRestExchange:
    """Kraken public REST stand-in over ``trades``. Use ``async with`` or ``start``/``stop``.

    ``now_us`` tells the present of the replayed market (only trades up to it are served,
    the interval holding it is the forming one); unset, the whole history has printed.
    """

    def __init__(
        self,
        trades: Iterable[Trade],
        symbols: Sequence[str],
        host: str = "127.0.0.1",
        port: int = 0,
        now_us: Callable[[], int] | None = None,
    ) -> None:
        unknown = set(symbols) - set(KRAKEN_PAIRS)
        if unknown:
            raise ValueError(f"no Kraken pair known for {sorted(unknown)}")
        self.symbols = tuple(symbols)
        per_symbol: dict[str, list[Trade]] = {symbol: [] for symbol in self.symbols}
        for trade in trades:
            if trade.symbol in per_symbol:
                per_symbol[trade.symbol].append(trade)
        self._history = {symbol: _SymbolHistory(rows) for symbol, rows in per_symbol.items()}
        self._pairs = {}
        for symbol in self.symbols:
            pair = KRAKEN_PAIRS[symbol]
            self._pairs[pair.pair_id] = self._pairs[pair.altname] = pair
        last_trade_us = max((h.times_us[-1] for h in self._history.values() if h.times_us),
                            default=0)
        self._now_us = now_us or (lambda: last_trade_us)
        self._host, self._port = host, port
        self._faults: deque[tuple[RestFault, str | None]] = deque()
        self.requests: Counter[str] = Counter()
        self.faults_served: Counter[RestFault] = Counter()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # --- life ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running server: ccxt's ``urls['api']['public']``."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the REST stand-in is not started")
        port = self._runner.addresses[0][1]
        return f"http://{self._host}:{port}"

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0: a free one)."""
        app = web.Application()
        app.router.add_get("/0/public/{endpoint}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._host, self._port)
        await self._site.start()
        log.info("REST stand-in listening on %s (%s)", self.url, ", ".join(self.symbols))

    async def stop(self) -> None:
        """Close the listening socket and every connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ReplayRestExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def inject(self, fault: RestFault, times: int = 1, endpoint: str | None = None) -> None:
        """Answer the next ``times`` requests (of ``endpoint`` only, if given) with ``fault``."""
        if times < 1:
            raise ValueError("times must be >= 1")
        if fault in _ROW_FAULTS:
            endpoint = "Trades"  # the only answer with trade rows to break
        self._faults.extend([(fault, endpoint)] * times)

    # --- requests -----------------------------------------------------------------------------

    def _take_fault(self, endpoint: str) -> RestFault | None:
        for index, (fault, only) in enumerate(self._faults):
            if only is None or only == endpoint:
                del self._faults[index]
                return fault
        return None

    async def _handle(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        self.requests[endpoint] += 1
        fault = self._take_fault(endpoint)
        if fault is not None:
            self.faults_served[fault] += 1
            if fault is RestFault.HTTP_500:
                return web.Response(status=500, text="Internal Server Error")
            if fault is RestFault.HTTP_429:
                return web.Response(status=429, text="Too Many Requests")
            if fault in _ROW_FAULTS:
                result = self._trades(request.query)
                rows = next(value for key, value in result.items() if key != "last")
                if rows:
                    index, value = _ROW_FAULTS[fault]
                    rows[0][index] = value
                return web.json_response({"error": [], "result": result})
            return web.json_response({"error": [_FAULT_ERRORS[fault]]})
        handler = {
            "Time": self._time,
            "SystemStatus": self._system_status,
            "Assets": self._assets,
            "AssetPairs": self._asset_pairs,
            "Trades": self._trades,
            "OHLC": self._ohlc,
        }.get(endpoint)
        if handler is None:
            return web.json_response({"error": ["EGeneral:Unknown method"]}, status=404)
        try:
            result = handler(request.query)
        except _KrakenError as exc:
            return web.json_response({"error": [str(exc)]})
        return web.json_response({"error": [], "result": result})

    def _pair(self, query: Mapping[str, str]) -> KrakenPair:
        pair = self._pairs.get(query.get("pair", ""))
        if pair is None:
            raise _KrakenError("EQuery:Unknown asset pair")
        return pair

    def _time(self, query: Mapping[str, str]) -> dict[str, object]:
        now_s = self._now_us() // US_PER_SECOND
        return {"unixtime": now_s, "rfc1123": formatdate(now_s, usegmt=True)}

    def _system_status(self, query: Mapping[str, str]) -> dict[str, object]:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._now_us() // US_PER_SECOND))
        return {"status": "online", "timestamp": now}

    def _assets(self, query: Mapping[str, str]) -> dict[str, object]:
        wanted = {KRAKEN_PAIRS[s].base for s in self.symbols} | {
            KRAKEN_PAIRS[s].quote for s in self.symbols}
        return {
            asset: {"aclass": "currency", "altname": altname, "decimals": decimals,
                    "display_decimals": display, "status": "enabled"}
            for asset, (altname, decimals, display) in KRAKEN_ASSETS.items() if asset in wanted
        }

    def _asset_pairs(self, query: Mapping[str, str]) -> dict[str, object]:
        return {
            pair.pair_id: {
                "altname": pair.altname, "wsname": pair.wsname, "aclass_base": "currency",
                "base": pair.base, "aclass_quote": "currency", "quote": pair.quote,
                "lot": "unit", "cost_decimals": 5, "pair_decimals": pair.pair_decimals,
                "lot_decimals": pair.lot_decimals, "lot_multiplier": 1, "leverage_buy": [],
                "leverage_sell": [], "fees": [[0, 0.26], [50000, 0.24]],
                "fees_maker": [[0, 0.16], [50000, 0.14]], "fee_volume_currency": "ZUSD",
                "margin_call": 80, "margin_stop": 40, "ordermin": pair.ordermin,
                "costmin": pair.costmin, "tick_size": str(Decimal(1).scaleb(-pair.pair_decimals)),
                "status": "online",
            }
            for pair in (KRAKEN_PAIRS[s] for s in self.symbols)
        }

    def _trades(self, query: Mapping[str, str]) -> dict[str, Any]:
        pair = self._pair(query)
        count = _decimal_arg(query.get("count"), "count")
        limit = MAX_TRADES_PER_PAGE if count is None else max(1, min(int(count),
                                                                       MAX_TRADES_PER_PAGE))
        since = _since_ns(query.get("since"))
        history = self._history[pair.symbol]
        end = history.visible(self._now_us())
        if since is None:  # the most recent trades
            start = max(0, end - limit)
        else:  # strictly after the cursor (trade times are whole microseconds)
            start = min(bisect.bisect_right(history.times_us, since // _NS_PER_US), end)
        stop = min(start + limit, end)
        while 0 < stop < end and history.times_us[stop] == history.times_us[stop - 1]:
            stop += 1  # never split one timestamp across pages
        rows = [
            [repr(t.price), repr(t.qty), t.ts_us / US_PER_SECOND,
             "b" if t.side == "buy" else "s", "l" if t.ord_type == "limit" else "m", "",
             t.trade_id]
            for t in history.trades[start:stop]
        ]
        last = history.times_us[stop - 1] * _NS_PER_US if stop > start else since or 0
        return {pair.pair_id: rows, "last": str(last)}

    def _ohlc(self, query: Mapping[str, str]) -> dict[str, object]:
        pair = self._pair(query)
        interval_arg = _decimal_arg(query.get("interval"), "interval")
        interval = 1 if interval_arg is None else int(interval_arg)
        if interval not in OHLC_INTERVALS:
            raise _KrakenError("EGeneral:Invalid arguments:interval")
        since = _decimal_arg(query.get("since"), "since")
        span_us = interval * US_PER_MINUTE
        now_us = self._now_us()
        forming_us = now_us - now_us % span_us
        window_start_us = forming_us - (MAX_OHLC_ROWS - 1) * span_us
        if since is not None:  # exclusive, in seconds
            after_us = (int(since) + 1) * US_PER_SECOND
            window_start_us = max(window_start_us, after_us + (-after_us) % span_us)
        history = self._history[pair.symbol]
        first = bisect.bisect_left(history.times_us, window_start_us)
        visible = history.visible(now_us)
        # The close before the window prices its leading quiet intervals.
        close = history.trades[first - 1].price if 0 < first <= visible else None
        rows: list[list[object]] = []
        index = first
        for start_us in range(window_start_us, forming_us + span_us, span_us):
            bucket: list[Trade] = []
            while index < visible and history.times_us[index] < start_us + span_us:
                bucket.append(history.trades[index])
                index += 1
            if bucket:
                rows.append(_ohlc_row(bucket, span_us))
                close = bucket[-1].price
            elif close is not None:  # Kraken's quiet interval: flat at the close, no volume
                rows.append([start_us // US_PER_SECOND, repr(close), repr(close), repr(close),
                             repr(close), "0.000000", "0.00000000", 0])
        last_closed_us = forming_us - span_us
        return {pair.pair_id: rows, "last": last_closed_us // US_PER_SECOND}


def _bucket_start(trades: list[Trade], span_us: int) -> int:
    return trades[0].ts_us - trades[0].ts_us % span_us


def _ohlc_row(trades: list[Trade], span_us: int) -> list[object]:
    """Kraken's OHLC row of one interval's trades."""
    volume = sum(t.qty for t in trades)
    vwap = sum(t.price * t.qty for t in trades) / volume if volume > 0 else trades[-1].price
    prices = [t.price for t in trades]
    return [
        _bucket_start(trades, span_us) // US_PER_SECOND, repr(trades[0].price), repr(max(prices)),
        repr(min(prices)), repr(trades[-1].price), repr(vwap), repr(volume), len(trades),
    ]


async def run_replay_rest(
    trades: Iterable[Trade],
    symbols: Sequence[str],
    host: str = "127.0.0.1",
    port: int = 8766,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the REST stand-in until ``stop`` is set (forever without one)."""
    async with ReplayRestExchange(trades, symbols, host=host, port=port) as exchange:
        print(f"Kraken REST stand-in on {exchange.url} for {', '.join(symbols)}", flush=True)
        await (stop.wait() if stop is not None else asyncio.Future())
