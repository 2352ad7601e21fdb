"""Codec of Kraken's WebSocket API v2 public messages (the ``trade`` channel and the admin ones).

Used on both sides of the wire: the replay exchange encodes what Kraken's server sends and
parses what clients request; the streamer does the opposite. Message shapes follow
docs.kraken.com (spot WebSocket v2: trade, heartbeat, status, ping, subscribe):

- subscribe: ``{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USDT"],
  "snapshot":false},"req_id":1}``
- one ack per symbol: ``{"method":"subscribe","req_id":1,"result":{"channel":"trade",
  "snapshot":false,"symbol":"BTC/USDT"},"success":true,"time_in":…,"time_out":…}``
- an error ack: ``{"error":"Currency pair not supported FOO/BAR","method":"subscribe",
  "req_id":1,"success":false,"symbol":"FOO/BAR","time_in":…,"time_out":…}``
- ``{"channel":"heartbeat"}``, and ``{"channel":"status","type":"update","data":[{"system":
  "online","api_version":"v2","connection_id":…,"version":…}]}``
- ``{"method":"ping","req_id":7}`` -> ``{"method":"pong","req_id":7,"time_in":…,"time_out":…}``
- ``{"channel":"trade","type":"update","data":[{"symbol","side","price","qty","ord_type",
  "trade_id","timestamp"}]}``, timestamps like ``"2023-09-25T07:49:37.708706Z"``

Parsing is the streamer's hot path, so trade items are read with plain ``json.loads`` and direct
field access (no per-trade validation library); every way a frame can be wrong ends in one
exception, :class:`KrakenFrameError`, which the caller counts and skips.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

from triplegain_core.market import US_PER_SECOND, Side, Trade

TRADE_CHANNEL = "trade"
SYSTEM_STATES = frozenset({"online", "cancel_only", "maintenance", "post_only"})
ORDER_TYPES = frozenset({"limit", "market"})
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_MAX_TRADE_ID = 2**63  # the trades table stores it as bigint
_INF = math.inf


class KrakenFrameError(ValueError):
    """A frame that is not a well-formed Kraken v2 message of a kind this codec knows."""


# --- typed messages -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    """A client's ``subscribe`` (or ``unsubscribe``) request for one channel."""

    channel: str
    symbols: tuple[str, ...]
    snapshot: bool = False
    req_id: int | None = None
    method: Literal["subscribe", "unsubscribe"] = "subscribe"


@dataclass(frozen=True, slots=True)
class PingRequest:
    """A client's application-level ``ping``."""

    req_id: int | None = None


@dataclass(frozen=True, slots=True)
class SubscribeAck:
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
class Pong:
    """The server's answer to a ``ping``."""

    req_id: int | None = None
    time_in_us: int | None = None
    time_out_us: int | None = None


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A failed reply to a request that is not a subscription (e.g. a malformed request)."""

    error: str
    method: str | None = None
    req_id: int | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """``{"channel":"heartbeat"}``: sent about once a second when nothing else flows."""


@dataclass(frozen=True, slots=True)
class Status:
    """The ``status`` channel: sent on connect and whenever the engine's state changes."""

    system: str
    api_version: str = "v2"
    connection_id: int = 0
    version: str = ""


@dataclass(frozen=True, slots=True)
class TradeMessage:
    """A ``trade`` snapshot or update: one or more trades, possibly of several symbols."""

    kind: Literal["snapshot", "update"]
    trades: list[Trade]


ClientMessage = SubscribeRequest | PingRequest
ServerMessage = TradeMessage | Heartbeat | Status | SubscribeAck | Pong | ErrorReply

HEARTBEAT = Heartbeat()


# --- timestamps -----------------------------------------------------------------------------

_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z", re.ASCII)


@lru_cache(maxsize=1 << 16)
def _epoch_seconds(prefix: str) -> int:
    # Trades cluster in time, so the calendar arithmetic runs once per distinct second.
    moment = datetime.fromisoformat(prefix).replace(tzinfo=UTC)
    return int(moment.timestamp())


@lru_cache(maxsize=1 << 16)
def _second_text(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def rfc3339_to_us(text: str) -> int:
    """``"2023-09-25T07:49:37.708706Z"`` -> epoch microseconds (UTC ``Z`` only; digits past
    the sixth are truncated). Raises :class:`KrakenFrameError` on anything else."""
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


def us_to_rfc3339(ts_us: int) -> str:
    """Epoch microseconds -> ``"2023-09-25T07:49:37.708706Z"`` (always six fraction digits)."""
    seconds, micros = divmod(ts_us, US_PER_SECOND)
    return f"{_second_text(seconds)}.{micros:06d}Z"


def _now_text() -> str:
    return us_to_rfc3339(time.time_ns() // 1000)


# --- encoding -------------------------------------------------------------------------------


def _dumps(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


def _with_req_id(message: dict, req_id: int | None) -> dict:
    if req_id is not None:
        message["req_id"] = req_id
    return message


def encode_subscribe(
    symbols: Sequence[str],
    channel: str = TRADE_CHANNEL,
    snapshot: bool = False,
    req_id: int | None = None,
    method: Literal["subscribe", "unsubscribe"] = "subscribe",
) -> str:
    """A ``subscribe`` request (``method="unsubscribe"`` for the opposite)."""
    params = {"channel": channel, "symbol": list(symbols), "snapshot": snapshot}
    return _dumps(_with_req_id({"method": method, "params": params}, req_id))


def encode_ping(req_id: int | None = None) -> str:
    """An application-level ``ping``."""
    return _dumps(_with_req_id({"method": "ping"}, req_id))


def encode_subscribe_ack(
    symbol: str,
    channel: str = TRADE_CHANNEL,
    snapshot: bool = False,
    req_id: int | None = None,
    time_in: str | None = None,
    method: Literal["subscribe", "unsubscribe"] = "subscribe",
) -> str:
    """The success ack for one symbol; ``time_in`` is when the request arrived (RFC 3339)."""
    message = {
        "method": method,
        "result": {"channel": channel, "snapshot": snapshot, "symbol": symbol},
        "success": True,
        "time_in": time_in or _now_text(),
        "time_out": _now_text(),
    }
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


def encode_trades(trades: Iterable[Trade], kind: Literal["snapshot", "update"] = "update") -> str:
    """A ``trade`` message carrying ``trades`` in order (floats print their exact repr)."""
    data = [
        {"symbol": t.symbol, "side": t.side.value, "price": t.price, "qty": t.qty,
         "ord_type": t.ord_type, "trade_id": t.trade_id, "timestamp": us_to_rfc3339(t.ts_us)}
        for t in trades
    ]
    return _dumps({"channel": TRADE_CHANNEL, "type": kind, "data": data})


# --- decoding -------------------------------------------------------------------------------


def _load(frame: str | bytes) -> dict:
    try:
        message = json.loads(frame)
    except (ValueError, TypeError) as exc:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise KrakenFrameError(f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise KrakenFrameError("JSON nested too deeply") from exc
    if type(message) is not dict:
        raise KrakenFrameError(f"not a JSON object: {type(message).__name__}")
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
    if kind is not float and kind is not int:  # bool is a distinct type: rejected here
        raise KrakenFrameError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer too large for a float
        raise KrakenFrameError(f"{name} out of range") from None
    if not 0 < number < _INF:  # also false for NaN
        raise KrakenFrameError(f"{name} must be positive and finite, got {value!r}")
    return number


def _parse_trade(item: object) -> Trade:
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
    if type(ord_type) is not str or ord_type not in ORDER_TYPES:
        raise KrakenFrameError(f"ord_type must be 'limit' or 'market', got {ord_type!r}")
    taker = _SIDES.get(side) if type(side) is str else None
    if taker is None:
        raise KrakenFrameError(f"side must be 'buy' or 'sell', got {side!r}")
    return Trade(symbol, trade_id, rfc3339_to_us(stamp), _positive(price, "price"),
                 _positive(qty, "qty"), taker, ord_type)


def _parse_trade_message(message: dict) -> TradeMessage:
    kind, data = message.get("type"), message.get("data")
    if kind != "update" and kind != "snapshot":
        raise KrakenFrameError(f"trade message type must be 'update' or 'snapshot', got {kind!r}")
    if type(data) is not list:
        raise KrakenFrameError("trade message data must be a list")
    return TradeMessage(kind, [_parse_trade(item) for item in data])


def _parse_status(message: dict) -> Status:
    data = message.get("data")
    if type(data) is not list or not data or type(data[0]) is not dict:
        raise KrakenFrameError("status data must be a non-empty list of objects")
    item = data[0]
    system = item.get("system")
    if type(system) is not str or system not in SYSTEM_STATES:
        raise KrakenFrameError(f"unknown system status {system!r}")
    return Status(system, _opt_str(item, "api_version") or "v2",
                  _opt_int(item, "connection_id") or 0, _opt_str(item, "version") or "")


def _parse_reply(message: dict, method: object) -> SubscribeAck | Pong | ErrorReply:
    req_id = _opt_int(message, "req_id")
    if method == "pong":
        return Pong(req_id, _opt_time(message, "time_in"), _opt_time(message, "time_out"))
    success = message.get("success")
    if type(success) is not bool:
        raise KrakenFrameError(f"reply to {method!r} lacks a boolean 'success'")
    error = _opt_str(message, "error")
    if method == "subscribe" or method == "unsubscribe":
        result = message.get("result")
        if success and type(result) is not dict:
            raise KrakenFrameError(f"successful {method} ack lacks its 'result' object")
        source = result if type(result) is dict else message
        return SubscribeAck(method, success, _opt_str(source, "channel"),
                            _opt_str(source, "symbol"), req_id, error,
                            _opt_time(message, "time_in"), _opt_time(message, "time_out"))
    if success or error is None:
        raise KrakenFrameError(f"unexpected reply to method {method!r}")
    return ErrorReply(error, method if type(method) is str else None, req_id)


def parse_server_message(frame: str | bytes) -> ServerMessage:
    """Parse a frame the exchange sent. Raises :class:`KrakenFrameError` if it is malformed
    or of a kind this codec does not know (another channel, an unexpected method)."""
    message = _load(frame)
    channel = message.get("channel")
    if channel == TRADE_CHANNEL:
        return _parse_trade_message(message)
    if channel == "heartbeat":
        return HEARTBEAT
    if channel == "status":
        return _parse_status(message)
    if channel is not None:
        raise KrakenFrameError(f"unexpected channel {channel!r}")
    if "method" in message or "error" in message:
        return _parse_reply(message, message.get("method"))
    raise KrakenFrameError("neither a channel message nor a reply")


def parse_client_message(frame: str | bytes) -> ClientMessage:
    """Parse a frame a client sent to the exchange (subscribe, unsubscribe, ping)."""
    message = _load(frame)
    method = message.get("method")
    req_id = _opt_int(message, "req_id")
    if method == "ping":
        return PingRequest(req_id)
    if method != "subscribe" and method != "unsubscribe":
        raise KrakenFrameError(f"unsupported method {method!r}")
    params = message.get("params")
    if type(params) is not dict:
        raise KrakenFrameError(f"{method} needs a 'params' object")
    channel = params.get("channel")
    if type(channel) is not str:
        raise KrakenFrameError(f"{method} params need a 'channel' string")
    symbols = params.get("symbol")
    if type(symbols) is not list or not symbols or any(type(s) is not str for s in symbols):
        raise KrakenFrameError(f"{method} params need 'symbol': a non-empty list of strings")
    snapshot = params.get("snapshot", False)
    if type(snapshot) is not bool:
        raise KrakenFrameError(f"'snapshot' must be a boolean, got {snapshot!r}")
    return SubscribeRequest(channel, tuple(symbols), snapshot, req_id, method)
