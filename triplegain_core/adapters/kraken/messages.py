"""Codec of Kraken's WebSocket API v2 public messages: ``trade``, ``book``, ``ohlc``,
``ticker``, ``instrument`` and the admin ones (``heartbeat``, ``status``, ping, subscribe).

Used on both sides of the wire: the replay exchange encodes what Kraken's server sends and
parses what clients request; the streamer does the opposite. Message shapes follow
docs.kraken.com (spot WebSocket v2):

- subscribe: ``{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USDT"],
  "depth":10,"snapshot":true},"req_id":1}`` (``instrument`` takes no symbol, ``ohlc`` an
  ``interval`` in minutes)
- one ack per symbol: ``{"method":"subscribe","req_id":1,"result":{"channel":"trade",
  "snapshot":false,"symbol":"BTC/USDT"},"success":true,"time_in":…,"time_out":…}``
- an error ack: ``{"error":"Currency pair not supported FOO/BAR","method":"subscribe",
  "req_id":1,"success":false,"symbol":"FOO/BAR","time_in":…,"time_out":…}``
- ``{"channel":"heartbeat"}``, and ``{"channel":"status","type":"update","data":[{"system":
  "online","api_version":"v2","connection_id":…,"version":…}]}``
- ``{"method":"ping","req_id":7}`` -> ``{"method":"pong","req_id":7,"time_in":…,"time_out":…}``
- ``{"channel":"trade","type":"update","data":[{"symbol","side","price","qty","ord_type",
  "trade_id","timestamp"}]}``, timestamps like ``"2023-09-25T07:49:37.708706Z"``
- ``{"channel":"book","type":"snapshot"|"update","data":[{"symbol","bids":[{"price","qty"}],
  "asks":[…],"checksum","timestamp"}]}``: prices and quantities keep their exact decimal
  text (:class:`~decimal.Decimal`) because the CRC32 checksum hashes that text
- ``{"channel":"ohlc","type":…,"data":[{"symbol","open","high","low","close","trades",
  "volume","vwap","interval_begin","interval","timestamp"}]}``
- ``{"channel":"ticker","type":…,"data":[{"symbol","bid","bid_qty","ask","ask_qty","last",
  "volume","vwap","low","high","change","change_pct"}]}``
- ``{"channel":"instrument","type":"snapshot","data":{"assets":[…],"pairs":[{"symbol",
  "base","quote","status","price_precision","price_increment","qty_precision",
  "qty_increment","qty_min","cost_min","marginable"}]}}``

Parsing trades is the streamer's hot path: frames are read with ``orjson`` and trade items
with direct field access and explicit checks (no per-trade validation library). Every way a
frame can be wrong ends in one exception, :class:`KrakenFrameError`, which the caller counts
and skips.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Literal

import orjson

from triplegain_core.adapters.kraken.book import BOOK_DEPTHS, KrakenBookLevel
from triplegain_core.model.market import US_PER_SECOND, Side, Trade

TRADE_CHANNEL = "trade"
BOOK_CHANNEL = "book"
OHLC_CHANNEL = "ohlc"
TICKER_CHANNEL = "ticker"
INSTRUMENT_CHANNEL = "instrument"
SYMBOL_CHANNELS = frozenset({TRADE_CHANNEL, BOOK_CHANNEL, OHLC_CHANNEL, TICKER_CHANNEL})
OHLC_INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
SYSTEM_STATES = frozenset({"online", "cancel_only", "maintenance", "post_only"})
ORDER_TYPES = frozenset({"limit", "market"})
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_MAX_TRADE_ID = 2**63  # the trades table stores it as bigint
_INF = math.inf
_MAX_DECIMALS = 30  # digits either side of the point a book price or qty may have

MessageKind = Literal["snapshot", "update"]


class KrakenFrameError(ValueError):
    """A frame that is not a well-formed Kraken v2 message of a kind this codec knows."""


# --- typed messages -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KrakenSubscribeRequest:
    """A client's ``subscribe`` (or ``unsubscribe``) request for one channel.

    ``symbols`` is empty for ``instrument``; ``depth`` is the book depth, ``interval`` the
    ohlc interval in minutes (``None`` for channels that take neither)."""

    channel: str
    symbols: tuple[str, ...]
    snapshot: bool = False
    req_id: int | None = None
    method: Literal["subscribe", "unsubscribe"] = "subscribe"
    depth: int | None = None
    interval: int | None = None


@dataclass(frozen=True, slots=True)
class KrakenPingRequest:
    """A client's application-level ``ping``."""

    req_id: int | None = None


@dataclass(frozen=True, slots=True)
class KrakenSubscribeAck:
    """The server's reply for one symbol of a (un)subscribe request; ``error`` when it failed."""

    method: Literal["subscribe", "unsubscribe"]
    success: bool
    channel: str | None
    symbol: str | None
    req_id: int | None = None
    error: str | None = None
    time_in_us: int | None = None
    time_out_us: int | None = None


@dataclass(frozen=True, slots=True)
class KrakenPong:
    """The server's answer to a ``ping``."""

    req_id: int | None = None
    time_in_us: int | None = None
    time_out_us: int | None = None


@dataclass(frozen=True, slots=True)
class KrakenErrorReply:
    """A failed reply to a request that is not a subscription (e.g. a malformed request)."""

    error: str
    method: str | None = None
    req_id: int | None = None


@dataclass(frozen=True, slots=True)
class KrakenHeartbeat:
    """``{"channel":"heartbeat"}``: sent about once a second when nothing else flows."""


@dataclass(frozen=True, slots=True)
class KrakenStatus:
    """The ``status`` channel: sent on connect and whenever the engine's state changes."""

    system: str
    api_version: str = "v2"
    connection_id: int = 0
    version: str = ""


@dataclass(frozen=True, slots=True)
class KrakenTradeMessage:
    """A ``trade`` snapshot or update: one or more trades, possibly of several symbols."""

    kind: MessageKind
    trades: list[Trade]


@dataclass(frozen=True, slots=True)
class KrakenBookData:
    """One symbol's part of a ``book`` message; ``ts_us`` is 0 when absent (snapshots)."""

    symbol: str
    bids: tuple[KrakenBookLevel, ...]
    asks: tuple[KrakenBookLevel, ...]
    checksum: int
    ts_us: int = 0


@dataclass(frozen=True, slots=True)
class KrakenBookMessage:
    """A ``book`` snapshot or update."""

    kind: MessageKind
    books: list[KrakenBookData]


@dataclass(frozen=True, slots=True)
class KrakenOhlcBar:
    """One item of the ``ohlc`` channel: the exchange's candle of ``interval`` minutes."""

    symbol: str
    open: float
    high: float
    low: float
    close: float
    trades: int
    volume: float
    vwap: float
    interval_begin_us: int
    interval: int
    ts_us: int


@dataclass(frozen=True, slots=True)
class KrakenOhlcMessage:
    """An ``ohlc`` snapshot or update."""

    kind: MessageKind
    bars: list[KrakenOhlcBar]


@dataclass(frozen=True, slots=True)
class KrakenTicker:
    """One item of the ``ticker`` channel (level-1 and 24 h statistics)."""

    symbol: str
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float
    last: float
    volume: float
    vwap: float
    low: float
    high: float
    change: float
    change_pct: float
    ts_us: int = 0


@dataclass(frozen=True, slots=True)
class KrakenTickerMessage:
    """A ``ticker`` snapshot or update."""

    kind: MessageKind
    tickers: list[KrakenTicker]


@dataclass(frozen=True, slots=True)
class KrakenInstrumentPair:
    """A tradable pair of the ``instrument`` channel."""

    symbol: str
    base: str
    quote: str
    status: str
    price_precision: int
    price_increment: float
    qty_precision: int
    qty_increment: float
    qty_min: float
    cost_min: float
    marginable: bool = False


@dataclass(frozen=True, slots=True)
class KrakenInstrumentMessage:
    """The ``instrument`` channel: reference data of pairs (assets are not kept)."""

    kind: MessageKind
    pairs: list[KrakenInstrumentPair]


KrakenClientMessage = KrakenSubscribeRequest | KrakenPingRequest
KrakenServerMessage = (KrakenTradeMessage | KrakenBookMessage | KrakenOhlcMessage | KrakenTickerMessage
                       | KrakenInstrumentMessage | KrakenHeartbeat | KrakenStatus | KrakenSubscribeAck
                       | KrakenPong | KrakenErrorReply)

HEARTBEAT = KrakenHeartbeat()


# --- timestamps -----------------------------------------------------------------------------

_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z", re.ASCII)
# Date ("2023-09-25") -> epoch seconds of its midnight, for the fast path; filled only by
# dates the full parser accepted.
_DAY_CACHE: dict[str, int] = {}
_DAY_CACHE_MAX = 4096


@lru_cache(maxsize=4096)
def _epoch_seconds(prefix: str) -> int:
    # Trades cluster in time, so the calendar arithmetic runs once per distinct second.
    moment = datetime.fromisoformat(prefix).replace(tzinfo=UTC)
    return int(moment.timestamp())


@lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def _rfc3339_slow(text: object) -> int:
    match = _RFC3339.fullmatch(text) if type(text) is str else None
    if match is None:
        raise KrakenFrameError(f"not an RFC 3339 UTC timestamp: {text!r}")
    try:
        seconds = _epoch_seconds(match[1])
    except ValueError as exc:  # e.g. month 13, February 30th
        raise KrakenFrameError(f"not a valid timestamp: {text!r}") from exc
    fraction = match[2]
    micros = int((fraction + "00000")[:6]) if fraction else 0
    return seconds * US_PER_SECOND + micros


def rfc3339_to_us(text: str) -> int:
    """``"2023-09-25T07:49:37.708706Z"`` -> epoch microseconds (UTC ``Z`` only; digits past
    the sixth are truncated). Raises :class:`KrakenFrameError` on anything else."""
    # Fast path for Kraken's usual shape (six fraction digits): the date is looked up once
    # per day, the time of day is plain arithmetic on checked ASCII digits.
    if type(text) is str and len(text) == 27:
        day = _DAY_CACHE.get(text[:10])
        clock = text[11:13] + text[14:16] + text[17:19]
        fraction = text[20:26]
        if (day is not None and text[10] == "T" and text[13] == ":" and text[16] == ":"
                and text[19] == "." and text[26] == "Z" and clock.isdigit() and clock.isascii()
                and fraction.isdigit() and fraction.isascii()):
            hms = int(clock)
            hours, rest = divmod(hms, 10_000)
            minutes, seconds = divmod(rest, 100)
            if hours < 24 and minutes < 60 and seconds < 60:
                return ((day + hours * 3600 + minutes * 60 + seconds) * US_PER_SECOND
                        + int(fraction))
    ts_us = _rfc3339_slow(text)
    if len(_DAY_CACHE) >= _DAY_CACHE_MAX:
        _DAY_CACHE.clear()
    moment = ts_us // US_PER_SECOND
    _DAY_CACHE[text[:10]] = moment - moment % 86_400
    return ts_us


def us_to_rfc3339(ts_us: int) -> str:
    """Epoch microseconds -> ``"2023-09-25T07:49:37.708706Z"`` (always six fraction digits)."""
    seconds, micros = divmod(ts_us, US_PER_SECOND)
    return f"{_second_text(seconds)}.{micros:06d}Z"


def _now_text() -> str:
    return us_to_rfc3339(time.time_ns() // 1000)


# --- encoding -------------------------------------------------------------------------------


def _dumps(message: dict) -> str:
    return orjson.dumps(message).decode()


def _with_req_id(message: dict, req_id: int | None) -> dict:
    if req_id is not None:
        message["req_id"] = req_id
    return message


def _channel_params(channel: str, symbols: Sequence[str], snapshot: bool, depth: int | None,
                    interval: int | None) -> dict:
    params: dict = {"channel": channel}
    if channel != INSTRUMENT_CHANNEL or symbols:
        params["symbol"] = list(symbols)
    if depth is not None:
        params["depth"] = depth
    if interval is not None:
        params["interval"] = interval
    params["snapshot"] = snapshot
    return params


def encode_subscribe(
    symbols: Sequence[str],
    channel: str = TRADE_CHANNEL,
    snapshot: bool = False,
    req_id: int | None = None,
    method: Literal["subscribe", "unsubscribe"] = "subscribe",
    depth: int | None = None,
    interval: int | None = None,
) -> str:
    """A ``subscribe`` request (``method="unsubscribe"`` for the opposite); ``depth`` for
    ``book``, ``interval`` (minutes) for ``ohlc``; ``instrument`` takes no symbols."""
    params = _channel_params(channel, symbols, snapshot, depth, interval)
    return _dumps(_with_req_id({"method": method, "params": params}, req_id))


def encode_ping(req_id: int | None = None) -> str:
    """An application-level ``ping``."""
    return _dumps(_with_req_id({"method": "ping"}, req_id))


def encode_subscribe_ack(
    symbol: str | None,
    channel: str = TRADE_CHANNEL,
    snapshot: bool = False,
    req_id: int | None = None,
    time_in: str | None = None,
    method: Literal["subscribe", "unsubscribe"] = "subscribe",
    depth: int | None = None,
    interval: int | None = None,
) -> str:
    """The success ack for one symbol (``None`` for ``instrument``); ``time_in`` is when the
    request arrived (RFC 3339)."""
    result: dict = {"channel": channel}
    if depth is not None:
        result["depth"] = depth
    if interval is not None:
        result["interval"] = interval
    result["snapshot"] = snapshot
    if symbol is not None:
        result["symbol"] = symbol
    message = {"method": method, "result": result, "success": True,
               "time_in": time_in or _now_text(), "time_out": _now_text()}
    return _dumps(_with_req_id(message, req_id))


def encode_error(
    error: str,
    method: str | None = None,
    req_id: int | None = None,
    symbol: str | None = None,
    time_in: str | None = None,
) -> str:
    """A failed reply: a subscription error for ``symbol``, or a rejected request."""
    message: dict = {"error": error, "success": False}
    if method is not None:
        message["method"] = method
    if symbol is not None:
        message["symbol"] = symbol
    message["time_in"] = time_in or _now_text()
    message["time_out"] = _now_text()
    return _dumps(_with_req_id(message, req_id))


def encode_pong(req_id: int | None = None, time_in: str | None = None) -> str:
    """The answer to a ``ping``."""
    message = {"method": "pong", "time_in": time_in or _now_text(), "time_out": _now_text()}
    return _dumps(_with_req_id(message, req_id))


def encode_heartbeat() -> str:
    """``{"channel":"heartbeat"}``."""
    return '{"channel":"heartbeat"}'


def encode_status(
    system: str = "online", connection_id: int = 0, version: str = "2.0.0"
) -> str:
    """The ``status`` update a server sends on connect."""
    data = {"api_version": "v2", "connection_id": connection_id, "system": system,
            "version": version}
    return _dumps({"channel": "status", "type": "update", "data": [data]})


def encode_trades(trades: Iterable[Trade], kind: MessageKind = "update") -> str:
    """A ``trade`` message carrying ``trades`` in order (floats print their shortest repr)."""
    data = [
        {"symbol": t.symbol, "side": t.side.value, "price": t.price, "qty": t.qty,
         "ord_type": t.ord_type, "trade_id": t.trade_id, "timestamp": us_to_rfc3339(t.ts_us)}
        for t in trades
    ]
    return _dumps({"channel": TRADE_CHANNEL, "type": kind, "data": data})


def _levels_json(levels: Iterable[KrakenBookLevel]) -> str:
    # Decimal text goes on the wire verbatim as a JSON number, trailing zeros included,
    # as Kraken prints it: a float encoder would drop them and break the checksum.
    return ",".join(f'{{"price":{format(level.price, "f")},"qty":{format(level.qty, "f")}}}'
                    for level in levels)


def encode_book(book: KrakenBookData, kind: MessageKind = "update") -> str:
    """A ``book`` message for one symbol; ``ts_us`` 0 leaves the timestamp out."""
    stamp = f',"timestamp":"{us_to_rfc3339(book.ts_us)}"' if book.ts_us else ""
    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":{_dumps(book.symbol)},'
            f'"bids":[{_levels_json(book.bids)}],"asks":[{_levels_json(book.asks)}],'
            f'"checksum":{book.checksum}{stamp}}}]}}')


def encode_ohlc(bars: Iterable[KrakenOhlcBar], kind: MessageKind = "update") -> str:
    """An ``ohlc`` message."""
    data = [
        {"symbol": b.symbol, "open": b.open, "high": b.high, "low": b.low, "close": b.close,
         "trades": b.trades, "volume": b.volume, "vwap": b.vwap,
         "interval_begin": us_to_rfc3339(b.interval_begin_us), "interval": b.interval,
         "timestamp": us_to_rfc3339(b.ts_us)}
        for b in bars
    ]
    return _dumps({"channel": OHLC_CHANNEL, "type": kind, "data": data})


def encode_ticker(tickers: Iterable[KrakenTicker], kind: MessageKind = "update") -> str:
    """A ``ticker`` message."""
    data = []
    for t in tickers:
        item = {"symbol": t.symbol, "bid": t.bid, "bid_qty": t.bid_qty, "ask": t.ask,
                "ask_qty": t.ask_qty, "last": t.last, "volume": t.volume, "vwap": t.vwap,
                "low": t.low, "high": t.high, "change": t.change, "change_pct": t.change_pct}
        if t.ts_us:
            item["timestamp"] = us_to_rfc3339(t.ts_us)
        data.append(item)
    return _dumps({"channel": TICKER_CHANNEL, "type": kind, "data": data})


def encode_instrument(pairs: Iterable[KrakenInstrumentPair], kind: MessageKind = "snapshot") -> str:
    """An ``instrument`` message with ``pairs`` and their assets."""
    pair_items = []
    assets: dict[str, dict] = {}
    for p in pairs:
        pair_items.append({
            "symbol": p.symbol, "base": p.base, "quote": p.quote, "status": p.status,
            "qty_precision": p.qty_precision, "qty_increment": p.qty_increment,
            "price_precision": p.price_precision, "price_increment": p.price_increment,
            "qty_min": p.qty_min, "cost_min": p.cost_min, "marginable": p.marginable})
        for asset in (p.base, p.quote):
            assets[asset] = {"id": asset, "status": "enabled", "precision": 8,
                             "precision_display": 8, "borrowable": False,
                             "collateral_value": 0.0, "margin_rate": 0.0}
    data = {"assets": list(assets.values()), "pairs": pair_items}
    return _dumps({"channel": INSTRUMENT_CHANNEL, "type": kind, "data": data})


# --- decoding -------------------------------------------------------------------------------


_orjson_loads = orjson.loads


def _load(frame: str | bytes) -> dict:
    try:
        message = _orjson_loads(frame)
    except (ValueError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise KrakenFrameError(f"not JSON: {exc}") from exc
    if type(message) is not dict:
        raise KrakenFrameError(f"not a JSON object: {type(message).__name__}")
    return message


def _no_constants(name: str) -> object:
    raise KrakenFrameError(f"{name} is not a JSON number")


def _load_decimal(frame: str | bytes) -> dict:
    """Re-read a frame keeping JSON numbers with a fraction as exact :class:`Decimal`."""
    try:
        message = json.loads(frame, parse_float=Decimal, parse_constant=_no_constants)
    except (ValueError, TypeError) as exc:
        raise KrakenFrameError(f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise KrakenFrameError("JSON nested too deeply") from exc
    return message


def _opt_int(message: dict, key: str) -> int | None:
    value = message.get(key)
    if value is not None and type(value) is not int:
        raise KrakenFrameError(f"{key} must be an integer, got {value!r}")
    return value


def _opt_str(message: dict, key: str) -> str | None:
    value = message.get(key)
    if value is not None and type(value) is not str:
        raise KrakenFrameError(f"{key} must be a string, got {value!r}")
    return value


def _opt_time(message: dict, key: str) -> int | None:
    value = message.get(key)
    return None if value is None else rfc3339_to_us(value)


def _positive(value: object, name: str) -> float:
    kind = type(value)
    if kind is float:
        if 0 < value < _INF:  # also false for NaN
            return value
        raise KrakenFrameError(f"{name} must be positive and finite, got {value!r}")
    if kind is not int:  # bool is a distinct type: rejected here
        raise KrakenFrameError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer too large for a float
        raise KrakenFrameError(f"{name} out of range") from None
    if not 0 < number < _INF:
        raise KrakenFrameError(f"{name} must be positive and finite, got {value!r}")
    return number


def _finite(value: object, name: str) -> float:
    kind = type(value)
    if kind is not float and kind is not int:
        raise KrakenFrameError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        raise KrakenFrameError(f"{name} out of range") from None
    if not -_INF < number < _INF:
        raise KrakenFrameError(f"{name} must be finite, got {value!r}")
    return number


def _non_negative(value: object, name: str) -> float:
    number = _finite(value, name)
    if number < 0:
        raise KrakenFrameError(f"{name} must be >= 0, got {value!r}")
    return number


def _symbol(item: dict) -> str:
    symbol = item.get("symbol")
    if type(symbol) is not str or not symbol:
        raise KrakenFrameError(f"symbol must be a non-empty string, got {symbol!r}")
    return symbol


def _parse_trade(item: object) -> Trade:
    # The hot path: plain checks in line, the common shapes first; anything unusual goes
    # through the general helpers, which raise the precise error.
    if type(item) is not dict:
        raise KrakenFrameError(f"trade item is not an object: {item!r}")
    try:
        symbol, side, trade_id = item["symbol"], item["side"], item["trade_id"]
        price, qty, ord_type = item["price"], item["qty"], item["ord_type"]
        stamp = item["timestamp"]
    except KeyError as exc:
        raise KrakenFrameError(f"trade item misses {exc.args[0]!r}") from None
    if type(symbol) is not str or not symbol:
        raise KrakenFrameError(f"trade symbol must be a non-empty string, got {symbol!r}")
    if type(trade_id) is not int or not 0 <= trade_id < _MAX_TRADE_ID:
        raise KrakenFrameError(f"trade_id must be an integer in [0, 2**63), got {trade_id!r}")
    if ord_type != "market" and ord_type != "limit" or type(ord_type) is not str:
        raise KrakenFrameError(f"ord_type must be 'limit' or 'market', got {ord_type!r}")
    taker = _SIDES.get(side) if type(side) is str else None
    if taker is None:
        raise KrakenFrameError(f"side must be 'buy' or 'sell', got {side!r}")
    if type(price) is not float or not 0 < price < _INF:
        price = _positive(price, "price")
    if type(qty) is not float or not 0 < qty < _INF:
        qty = _positive(qty, "qty")
    return Trade(symbol, trade_id, rfc3339_to_us(stamp), price, qty, taker, ord_type)


def _kind_and_data(message: dict, channel: str) -> tuple[MessageKind, list]:
    kind, data = message.get("type"), message.get("data")
    if kind != "update" and kind != "snapshot":
        raise KrakenFrameError(f"{channel} message type must be 'update' or 'snapshot', "
                               f"got {kind!r}")
    if type(data) is not list:
        raise KrakenFrameError(f"{channel} message data must be a list")
    return kind, data


def _parse_trade_message(message: dict) -> KrakenTradeMessage:
    kind, data = _kind_and_data(message, TRADE_CHANNEL)
    return KrakenTradeMessage(kind, [_parse_trade(item) for item in data])


def _decimal(value: object, name: str, positive: bool) -> Decimal:
    if type(value) is int:
        value = Decimal(value)
    elif type(value) is not Decimal:
        raise KrakenFrameError(f"{name} must be a number, got {value!r}")
    try:
        ok = value > 0 if positive else value >= 0
    except InvalidOperation:
        ok = False
    if not ok or not value.is_finite():
        raise KrakenFrameError(f"{name} must be {'positive' if positive else '>= 0'}, "
                               f"got {value!r}")
    # Bounded magnitude: the checksum writes the number out in full (no exponent), so a
    # short "1e-999999" must not become a million digits; more digits than that come only
    # with as long a frame.
    if not -_MAX_DECIMALS <= value.adjusted() <= _MAX_DECIMALS:
        raise KrakenFrameError(f"{name} out of range: {value!r}")
    return value


def _levels(item: dict, key: str) -> tuple[KrakenBookLevel, ...]:
    raw = item.get(key)
    if type(raw) is not list:
        raise KrakenFrameError(f"book {key} must be a list")
    levels = []
    for level in raw:
        if type(level) is not dict:
            raise KrakenFrameError(f"book level must be an object, got {level!r}")
        levels.append(KrakenBookLevel(_decimal(level.get("price"), "price", True),
                                _decimal(level.get("qty"), "qty", False)))
    return tuple(levels)


def _parse_book_message(frame: str | bytes) -> KrakenBookMessage:
    message = _load_decimal(frame)
    kind, data = _kind_and_data(message, BOOK_CHANNEL)
    if not data:
        raise KrakenFrameError("book message without data")
    books = []
    for item in data:
        if type(item) is not dict:
            raise KrakenFrameError(f"book item is not an object: {item!r}")
        checksum = item.get("checksum")
        if type(checksum) is not int or not 0 <= checksum < 2**32:
            raise KrakenFrameError(f"book checksum must be a 32-bit unsigned integer, "
                                   f"got {checksum!r}")
        stamp = item.get("timestamp")
        books.append(KrakenBookData(_symbol(item), _levels(item, "bids"), _levels(item, "asks"),
                              checksum, 0 if stamp is None else rfc3339_to_us(stamp)))
    return KrakenBookMessage(kind, books)


def _count(value: object, name: str) -> int:
    if type(value) is not int or value < 0:
        raise KrakenFrameError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _parse_ohlc_message(message: dict) -> KrakenOhlcMessage:
    kind, data = _kind_and_data(message, OHLC_CHANNEL)
    bars = []
    for item in data:
        if type(item) is not dict:
            raise KrakenFrameError(f"ohlc item is not an object: {item!r}")
        interval = item.get("interval")
        if interval not in OHLC_INTERVALS or type(interval) is not int:
            raise KrakenFrameError(f"ohlc interval must be one of {OHLC_INTERVALS}, "
                                   f"got {interval!r}")
        bars.append(KrakenOhlcBar(
            _symbol(item), _positive(item.get("open"), "open"), _positive(item.get("high"), "high"),
            _positive(item.get("low"), "low"), _positive(item.get("close"), "close"),
            _count(item.get("trades"), "trades"), _non_negative(item.get("volume"), "volume"),
            _non_negative(item.get("vwap"), "vwap"), rfc3339_to_us(item.get("interval_begin")),
            interval, rfc3339_to_us(item.get("timestamp"))))
    return KrakenOhlcMessage(kind, bars)


def _parse_ticker_message(message: dict) -> KrakenTickerMessage:
    kind, data = _kind_and_data(message, TICKER_CHANNEL)
    tickers = []
    for item in data:
        if type(item) is not dict:
            raise KrakenFrameError(f"ticker item is not an object: {item!r}")
        stamp = item.get("timestamp")
        tickers.append(KrakenTicker(
            _symbol(item), _positive(item.get("bid"), "bid"),
            _non_negative(item.get("bid_qty"), "bid_qty"), _positive(item.get("ask"), "ask"),
            _non_negative(item.get("ask_qty"), "ask_qty"), _positive(item.get("last"), "last"),
            _non_negative(item.get("volume"), "volume"), _non_negative(item.get("vwap"), "vwap"),
            _non_negative(item.get("low"), "low"), _non_negative(item.get("high"), "high"),
            _finite(item.get("change"), "change"), _finite(item.get("change_pct"), "change_pct"),
            0 if stamp is None else rfc3339_to_us(stamp)))
    return KrakenTickerMessage(kind, tickers)


def _parse_instrument_message(message: dict) -> KrakenInstrumentMessage:
    kind, data = message.get("type"), message.get("data")
    if kind != "update" and kind != "snapshot":
        raise KrakenFrameError(f"instrument message type must be 'update' or 'snapshot', "
                               f"got {kind!r}")
    if type(data) is not dict or type(data.get("pairs")) is not list:
        raise KrakenFrameError("instrument data must be an object with a 'pairs' list")
    pairs = []
    for item in data["pairs"]:
        if type(item) is not dict:
            raise KrakenFrameError(f"instrument pair is not an object: {item!r}")
        texts = [item.get(key) for key in ("base", "quote", "status")]
        if any(type(text) is not str for text in texts):
            raise KrakenFrameError(f"instrument pair needs base, quote and status: {item!r}")
        marginable = item.get("marginable", False)
        if type(marginable) is not bool:
            raise KrakenFrameError(f"marginable must be a boolean, got {marginable!r}")
        pairs.append(KrakenInstrumentPair(
            _symbol(item), *texts, _count(item.get("price_precision"), "price_precision"),
            _positive(item.get("price_increment"), "price_increment"),
            _count(item.get("qty_precision"), "qty_precision"),
            _positive(item.get("qty_increment"), "qty_increment"),
            _non_negative(item.get("qty_min"), "qty_min"),
            _non_negative(item.get("cost_min"), "cost_min"), marginable))
    return KrakenInstrumentMessage(kind, pairs)


def _parse_status(message: dict) -> KrakenStatus:
    data = message.get("data")
    if type(data) is not list or not data or type(data[0]) is not dict:
        raise KrakenFrameError("status data must be a non-empty list of objects")
    item = data[0]
    system = item.get("system")
    if type(system) is not str or system not in SYSTEM_STATES:
        raise KrakenFrameError(f"unknown system status {system!r}")
    return KrakenStatus(system, _opt_str(item, "api_version") or "v2",
                  _opt_int(item, "connection_id") or 0, _opt_str(item, "version") or "")


def _parse_reply(message: dict, method: object) -> KrakenSubscribeAck | KrakenPong | KrakenErrorReply:
    req_id = _opt_int(message, "req_id")
    if method == "pong":
        return KrakenPong(req_id, _opt_time(message, "time_in"), _opt_time(message, "time_out"))
    success = message.get("success")
    if type(success) is not bool:
        raise KrakenFrameError(f"reply to {method!r} lacks a boolean 'success'")
    error = _opt_str(message, "error")
    if method == "subscribe" or method == "unsubscribe":
        result = message.get("result")
        if success and type(result) is not dict:
            raise KrakenFrameError(f"successful {method} ack lacks its 'result' object")
        source = result if type(result) is dict else message
        return KrakenSubscribeAck(method, success, _opt_str(source, "channel"),
                            _opt_str(source, "symbol"), req_id, error,
                            _opt_time(message, "time_in"), _opt_time(message, "time_out"))
    if success or error is None:
        raise KrakenFrameError(f"unexpected reply to method {method!r}")
    return KrakenErrorReply(error, method if type(method) is str else None, req_id)


def parse_server_message(frame: str | bytes) -> KrakenServerMessage:
    """Parse a frame the exchange sent. Raises :class:`KrakenFrameError` if it is malformed
    or of a kind this codec does not know (another channel, an unexpected method)."""
    try:
        message = _orjson_loads(frame)
    except (ValueError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise KrakenFrameError(f"not JSON: {exc}") from exc
    if type(message) is not dict:
        raise KrakenFrameError(f"not a JSON object: {type(message).__name__}")
    channel = message.get("channel")
    if channel == TRADE_CHANNEL:
        kind, data = message.get("type"), message.get("data")
        if (kind == "update" or kind == "snapshot") and type(data) is list:
            return KrakenTradeMessage(kind, [_parse_trade(item) for item in data])
        return _parse_trade_message(message)
    if channel == "heartbeat":
        return HEARTBEAT
    if channel == BOOK_CHANNEL:
        return _parse_book_message(frame)
    if channel == OHLC_CHANNEL:
        return _parse_ohlc_message(message)
    if channel == TICKER_CHANNEL:
        return _parse_ticker_message(message)
    if channel == "status":
        return _parse_status(message)
    if channel == INSTRUMENT_CHANNEL:
        return _parse_instrument_message(message)
    if channel is not None:
        raise KrakenFrameError(f"unexpected channel {channel!r}")
    if "method" in message or "error" in message:
        return _parse_reply(message, message.get("method"))
    raise KrakenFrameError("neither a channel message nor a reply")


def parse_client_message(frame: str | bytes) -> KrakenClientMessage:
    """Parse a frame a client sent to the exchange (subscribe, unsubscribe, ping)."""
    message = _load(frame)
    method = message.get("method")
    req_id = _opt_int(message, "req_id")
    if method == "ping":
        return KrakenPingRequest(req_id)
    if method != "subscribe" and method != "unsubscribe":
        raise KrakenFrameError(f"unsupported method {method!r}")
    params = message.get("params")
    if type(params) is not dict:
        raise KrakenFrameError(f"{method} needs a 'params' object")
    channel = params.get("channel")
    if type(channel) is not str:
        raise KrakenFrameError(f"{method} params need a 'channel' string")
    symbols = params.get("symbol")
    if channel == INSTRUMENT_CHANNEL and symbols is None:
        symbols = []
    elif type(symbols) is not list or not symbols or any(type(s) is not str for s in symbols):
        raise KrakenFrameError(f"{method} params need 'symbol': a non-empty list of strings")
    snapshot = params.get("snapshot", False)
    if type(snapshot) is not bool:
        raise KrakenFrameError(f"'snapshot' must be a boolean, got {snapshot!r}")
    depth = _opt_int(params, "depth")
    if depth is not None and depth not in BOOK_DEPTHS:
        raise KrakenFrameError(f"book depth must be one of {BOOK_DEPTHS}, got {depth}")
    interval = _opt_int(params, "interval")
    if interval is not None and interval not in OHLC_INTERVALS:
        raise KrakenFrameError(f"ohlc interval must be one of {OHLC_INTERVALS}, got {interval}")
    return KrakenSubscribeRequest(channel, tuple(symbols), snapshot, req_id, method, depth, interval)
