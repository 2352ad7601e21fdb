"""Parsing Kraken's WebSocket API v2 frames (shapes in :mod:`triplegain_core.adapters.kraken.messages`)
into typed messages: the server's, as the streamer reads them, and the client's requests, as the
replay exchange reads them.

Parsing trades is the streamer's hot path: frames are read with ``orjson`` and trade items
with direct field access and explicit checks (no per-trade validation library). Every way a
frame can be wrong ends in one exception, :class:`KrakenFrameError`, which the caller counts
and skips.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson

from triplegain_core.adapters.kraken.book import BOOK_DEPTHS, KrakenBookLevel
from triplegain_core.adapters.kraken.messages import (
    BOOK_CHANNEL,
    INSTRUMENT_CHANNEL,
    OHLC_CHANNEL,
    OHLC_INTERVALS,
    SYSTEM_STATES,
    TICKER_CHANNEL,
    TRADE_CHANNEL,
    KrakenBookData,
    KrakenBookMessage,
    KrakenClientMessage,
    KrakenErrorReply,
    KrakenFrameError,
    KrakenHeartbeat,
    KrakenInstrumentMessage,
    KrakenInstrumentPair,
    KrakenOhlcBar,
    KrakenOhlcMessage,
    KrakenPingRequest,
    KrakenPong,
    KrakenServerMessage,
    KrakenStatus,
    KrakenSubscribeAck,
    KrakenSubscribeRequest,
    KrakenTicker,
    KrakenTickerMessage,
    KrakenTradeMessage,
    MessageKind,
    rfc3339_to_us,
)
from triplegain_core.model.market import Side, Trade

_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_MAX_TRADE_ID = 2**63  # the trades table stores it as bigint
_INF = math.inf
_MAX_DECIMALS = 30  # digits either side of the point a book price or qty may have
HEARTBEAT = KrakenHeartbeat()


_orjson_loads = orjson.loads


def _load(frame: str | bytes) -> dict[str, Any]:
    try:
        message = _orjson_loads(frame)
    except (ValueError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise KrakenFrameError(f"not JSON: {exc}") from exc
    if type(message) is not dict:
        raise KrakenFrameError(f"not a JSON object: {type(message).__name__}")
    return message


def _no_constants(name: str) -> object:
    raise KrakenFrameError(f"{name} is not a JSON number")


def _load_decimal(frame: str | bytes) -> dict[str, Any]:
    """Re-read a frame keeping JSON numbers with a fraction as exact :class:`Decimal`."""
    try:
        # Only frames already read as a JSON object come here (the book channel's).
        message: dict[str, Any] = json.loads(frame, parse_float=Decimal, parse_constant=_no_constants)
    except (ValueError, TypeError) as exc:
        raise KrakenFrameError(f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise KrakenFrameError("JSON nested too deeply") from exc
    return message


def _opt_int(message: dict[str, Any], key: str) -> int | None:
    value = message.get(key)
    if value is not None and type(value) is not int:
        raise KrakenFrameError(f"{key} must be an integer, got {value!r}")
    return value


def _opt_str(message: dict[str, Any], key: str) -> str | None:
    value = message.get(key)
    if value is not None and type(value) is not str:
        raise KrakenFrameError(f"{key} must be a string, got {value!r}")
    return value


def _opt_time(message: dict[str, Any], key: str) -> int | None:
    value = message.get(key)
    return None if value is None else rfc3339_to_us(value)


def _positive(value: object, name: str) -> float:
    if type(value) is float:
        if 0 < value < _INF:  # also false for NaN
            return value
        raise KrakenFrameError(f"{name} must be positive and finite, got {value!r}")
    if type(value) is not int:  # bool is a distinct type: rejected here
        raise KrakenFrameError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer too large for a float
        raise KrakenFrameError(f"{name} out of range") from None
    if not 0 < number < _INF:
        raise KrakenFrameError(f"{name} must be positive and finite, got {value!r}")
    return number


def _finite(value: object, name: str) -> float:
    if type(value) is not float and type(value) is not int:
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


def _symbol(item: dict[str, Any]) -> str:
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
    if (ord_type != "market" and ord_type != "limit") or type(ord_type) is not str:
        raise KrakenFrameError(f"ord_type must be 'limit' or 'market', got {ord_type!r}")
    taker = _SIDES.get(side) if type(side) is str else None
    if taker is None:
        raise KrakenFrameError(f"side must be 'buy' or 'sell', got {side!r}")
    if type(price) is not float or not 0 < price < _INF:
        price = _positive(price, "price")
    if type(qty) is not float or not 0 < qty < _INF:
        qty = _positive(qty, "qty")
    return Trade(symbol, trade_id, rfc3339_to_us(stamp), price, qty, taker, ord_type)


def _kind_and_data(message: dict[str, Any], channel: str) -> tuple[MessageKind, list[Any]]:
    kind, data = message.get("type"), message.get("data")
    if kind != "update" and kind != "snapshot":
        raise KrakenFrameError(f"{channel} message type must be 'update' or 'snapshot', "
                               f"got {kind!r}")
    if type(data) is not list:
        raise KrakenFrameError(f"{channel} message data must be a list")
    return kind, data


def _parse_trade_message(message: dict[str, Any]) -> KrakenTradeMessage:
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


def _levels(item: dict[str, Any], key: str) -> tuple[KrakenBookLevel, ...]:
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


def _parse_ohlc_message(message: dict[str, Any]) -> KrakenOhlcMessage:
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


def _parse_ticker_message(message: dict[str, Any]) -> KrakenTickerMessage:
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


def _parse_instrument_message(message: dict[str, Any]) -> KrakenInstrumentMessage:
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
        base, quote, status = item.get("base"), item.get("quote"), item.get("status")
        if type(base) is not str or type(quote) is not str or type(status) is not str:
            raise KrakenFrameError(f"instrument pair needs base, quote and status: {item!r}")
        marginable = item.get("marginable", False)
        if type(marginable) is not bool:
            raise KrakenFrameError(f"marginable must be a boolean, got {marginable!r}")
        pairs.append(KrakenInstrumentPair(
            _symbol(item), base, quote, status, _count(item.get("price_precision"), "price_precision"),
            _positive(item.get("price_increment"), "price_increment"),
            _count(item.get("qty_precision"), "qty_precision"),
            _positive(item.get("qty_increment"), "qty_increment"),
            _non_negative(item.get("qty_min"), "qty_min"),
            _non_negative(item.get("cost_min"), "cost_min"), marginable))
    return KrakenInstrumentMessage(kind, pairs)


def _parse_status(message: dict[str, Any]) -> KrakenStatus:
    data = message.get("data")
    if type(data) is not list or not data or type(data[0]) is not dict:
        raise KrakenFrameError("status data must be a non-empty list of objects")
    item = data[0]
    system = item.get("system")
    if type(system) is not str or system not in SYSTEM_STATES:
        raise KrakenFrameError(f"unknown system status {system!r}")
    return KrakenStatus(system, _opt_str(item, "api_version") or "v2",
                  _opt_int(item, "connection_id") or 0, _opt_str(item, "version") or "")


def _parse_reply(message: dict[str, Any], method: object) -> KrakenSubscribeAck | KrakenPong | KrakenErrorReply:
    req_id = _opt_int(message, "req_id")
    if method == "pong":
        return KrakenPong(req_id, _opt_time(message, "time_in"), _opt_time(message, "time_out"))
    success = message.get("success")
    if type(success) is not bool:
        raise KrakenFrameError(f"reply to {method!r} lacks a boolean 'success'")
    error = _opt_str(message, "error")
    if method == "subscribe" or method == "unsubscribe":
        ack_method: Literal["subscribe", "unsubscribe"] = "subscribe" if method == "subscribe" else "unsubscribe"
        result = message.get("result")
        if success and type(result) is not dict:
            raise KrakenFrameError(f"successful {method} ack lacks its 'result' object")
        source = result if type(result) is dict else message
        return KrakenSubscribeAck(ack_method, success, _opt_str(source, "channel"),
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
