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

This module holds the typed messages, the channel names and the wire's timestamp format;
:mod:`~triplegain_core.adapters.kraken.encode` writes frames and
:mod:`~triplegain_core.adapters.kraken.parse` reads them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

from triplegain_core.adapters.kraken.book import KrakenBookLevel
from triplegain_core.model.market import US_PER_SECOND, Trade

TRADE_CHANNEL = "trade"
BOOK_CHANNEL = "book"
OHLC_CHANNEL = "ohlc"
TICKER_CHANNEL = "ticker"
INSTRUMENT_CHANNEL = "instrument"
SYMBOL_CHANNELS = frozenset({TRADE_CHANNEL, BOOK_CHANNEL, OHLC_CHANNEL, TICKER_CHANNEL})
OHLC_INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
SYSTEM_STATES = frozenset({"online", "cancel_only", "maintenance", "post_only"})
ORDER_TYPES = frozenset({"limit", "market"})

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


def rfc3339_to_us(text: object) -> int:
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
    assert isinstance(text, str), "the slow path takes nothing else"
    if len(_DAY_CACHE) >= _DAY_CACHE_MAX:
        _DAY_CACHE.clear()
    moment = ts_us // US_PER_SECOND
    _DAY_CACHE[text[:10]] = moment - moment % 86_400
    return ts_us


def us_to_rfc3339(ts_us: int) -> str:
    """Epoch microseconds -> ``"2023-09-25T07:49:37.708706Z"`` (always six fraction digits)."""
    seconds, micros = divmod(ts_us, US_PER_SECOND)
    return f"{_second_text(seconds)}.{micros:06d}Z"
