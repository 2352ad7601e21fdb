"""The Redis hot-state contract between the streamer, the executor and Dagster.

The written contract is ``docs/HOT_STATE.md``: every key and stream name, value format, TTL and
cap. :data:`CONTRACT` below is the same table in code (a test compares the two). All names start
with ``tg:v{CONTRACT_VERSION}:``; values are JSON objects whose fields are those of the
dataclasses here (and of :class:`~triplegain_core.model.market.Candle`).

Versioning: the major version in the prefix changes when an existing key, field or format
changes meaning or disappears, so old and new processes never misread each other. Additions
(new keys, new fields readers may ignore) raise only :data:`CONTRACT_REVISION`, which the
streamer writes into its heartbeat.

The TTLs make stale state disappear: an executor that finds no price does not trade.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar, cast

import orjson
import redis
from redis.typing import KeyT, StreamIdT, XReadResponse

from triplegain_core.model.market import TIMEFRAMES, Candle, Side, Trade
from triplegain_core.model.quotes import BookSnapshot, LastPrice, Ticker

log = logging.getLogger(__name__)

CONTRACT_VERSION = 1
CONTRACT_REVISION = "1.4"
PREFIX = f"tg:v{CONTRACT_VERSION}:"

PRICE_TTL_S = 60
TICKER_TTL_S = 60
BOOK_TTL_S = 15
CANDLE_TTL_S = 120  # the forming candle of each timeframe
RECENT_CANDLES_TTL_S = 2 * 86_400  # longer than a 1d candle, so a daily series survives
RECENT_CANDLES_CAP = 1000
HEARTBEAT_TTL_S = 15
CLOSED_CANDLES_MAXLEN = 100_000  # approximate (XADD MAXLEN ~)
# The deliberation <-> executor streams (triplegain_core.contracts.decision_streams), approximate too.
DECISIONS_MAXLEN = 10_000
# A published decision's marker lives until its entry is settled; this bounds a never-read one.
DECISION_MARKER_TTL_S = 7 * 86_400
# Public trades, one entry per streamer batch, for the strategies that read the tape.
TRADE_BATCHES_MAXLEN = 1000
STRONG_SIGNALS_MAXLEN = 10_000


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One row of the contract: a name pattern (after :data:`PREFIX`) and how it is kept."""

    pattern: str
    redis_type: str  # "string", "zset" or "stream"
    ttl_s: int | None
    cap: int | None


CONTRACT: tuple[KeySpec, ...] = (
    KeySpec("price:{symbol}", "string", PRICE_TTL_S, None),
    KeySpec("ticker:{symbol}", "string", TICKER_TTL_S, None),
    KeySpec("book:{symbol}", "string", BOOK_TTL_S, None),
    KeySpec("candle:{timeframe}:{symbol}", "string", CANDLE_TTL_S, None),
    KeySpec("candles:{timeframe}:{symbol}", "zset", RECENT_CANDLES_TTL_S, RECENT_CANDLES_CAP),
    KeySpec("stream:candles:{timeframe}", "stream", None, CLOSED_CANDLES_MAXLEN),
    KeySpec("streamer:heartbeat", "string", HEARTBEAT_TTL_S, None),
    KeySpec("stream:trades", "stream", None, TRADE_BATCHES_MAXLEN),
    KeySpec("stream:decisions", "stream", None, DECISIONS_MAXLEN),
    KeySpec("decision:published:{decision_id}", "string", DECISION_MARKER_TTL_S, None),
    KeySpec("stream:signals:strong", "stream", None, STRONG_SIGNALS_MAXLEN),
)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The streamer's liveness and counters; ``contract`` is the revision it writes."""

    ts_us: int
    trades: int = 0
    candles: int = 0
    late_trades: int = 0
    duplicate_trades: int = 0
    rejected_frames: int = 0
    reconnects: int = 0
    missed_intervals: int = 0
    last_trade_ts_us: int = 0
    contract: str = CONTRACT_REVISION


# One stream entry as XREAD and XRANGE return it: its id and its fields.
StreamEntry = tuple[bytes, dict[bytes, bytes]]


def xread_streams(reply: XReadResponse) -> list[tuple[bytes, list[StreamEntry]]]:
    """XREAD's reply as (stream, entries) pairs. redis-py types the reply of every protocol;
    the clients here speak RESP2, whose reply is that list (empty when nothing came)."""
    if isinstance(reply, dict):
        raise TypeError("a RESP3 XREAD reply: the hot-state clients speak RESP2")
    return cast(list[tuple[bytes, list[StreamEntry]]], reply)


def _loads(raw: bytes | str) -> Any:
    """orjson first (several times faster on the loop's hot path); Python's json for what it
    refuses (NaN, say), so a value reads exactly as before, just sooner."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def price_key(symbol: str) -> str:
    return f"{PREFIX}price:{symbol}"


def ticker_key(symbol: str) -> str:
    return f"{PREFIX}ticker:{symbol}"


def book_key(symbol: str) -> str:
    return f"{PREFIX}book:{symbol}"


def forming_candle_key(symbol: str, timeframe: str = "1m") -> str:
    return f"{PREFIX}candle:{timeframe}:{symbol}"


def recent_candles_key(symbol: str, timeframe: str = "1m") -> str:
    return f"{PREFIX}candles:{timeframe}:{symbol}"


def closed_candles_stream(timeframe: str = "1m") -> str:
    """The stream of one timeframe's closed (and corrected) candles."""
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}; known: {list(TIMEFRAMES)}")
    return f"{PREFIX}stream:candles:{timeframe}"


HEARTBEAT_KEY = PREFIX + "streamer:heartbeat"
TRADES_STREAM = PREFIX + "stream:trades"
CLOSED_CANDLES_STREAM = closed_candles_stream("1m")


def _candle_json(candle: Candle) -> str:
    return json.dumps(asdict(candle))


def _trade_row(trade: Trade) -> list[object]:
    return [trade.symbol, trade.trade_id, trade.ts_us, trade.price, trade.qty, trade.side.value]


def _trades(raw: bytes | str) -> list[Trade]:
    trades = [Trade(symbol, trade_id, ts_us, price, qty, Side(side))
              for symbol, trade_id, ts_us, price, qty, side in _loads(raw)]
    for trade in trades:
        _check_numbers(trade.symbol, ints=(trade.trade_id, trade.ts_us), positive=(trade.price, trade.qty))
    return trades


def _candle(raw: bytes | str) -> Candle:
    """A candle as published (its JSON object), its numbers and range checked."""
    candle = Candle(**_loads(raw))
    _check_numbers(candle.symbol, ints=(candle.open_time_us, candle.trade_count),
                   positive=(candle.open, candle.high, candle.low, candle.close))
    if not (isinstance(candle.volume, int | float) and math.isfinite(candle.volume) and candle.volume >= 0):
        raise ValueError(f"volume {candle.volume!r} is not a finite number >= 0")
    if not candle.low <= min(candle.open, candle.close) <= max(candle.open, candle.close) <= candle.high:
        raise ValueError(f"open/close outside [low, high]: {candle}")
    if candle.timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {candle.timeframe!r}")
    return candle


def _check_numbers(symbol: object, *, ints: Sequence[object], positive: Sequence[object]) -> None:
    """Refuse what a writer of another revision, a bug or a stranger could put on a stream."""
    if not isinstance(symbol, str):
        raise ValueError(f"symbol {symbol!r} is not a string")
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in ints):
        raise ValueError(f"{ints} are not all integers")
    if not all(isinstance(value, int | float) and math.isfinite(value) and value > 0 for value in positive):
        raise ValueError(f"{positive} are not all finite numbers > 0")


def _stream_entries(stream: str, entries: Sequence[StreamEntry], field: bytes,
                    parse: Callable[[bytes], _Parsed]) -> list[_Parsed]:
    """Each entry's ``field`` parsed; a malformed entry is logged (stream, id, why) and skipped:
    one bad entry never stops the reader, and the entries after it are read as usual."""
    parsed = []
    for raw_id, values in entries:
        try:
            parsed.append(parse(values[field]))
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            log.error("%s entry %s is malformed, skipped: %s", stream, entry_id(raw_id), error)
    return parsed


_Polled = TypeVar("_Polled", LastPrice, BookSnapshot)
_Parsed = TypeVar("_Parsed")


def _book_snapshot(raw: bytes | str) -> BookSnapshot:
    data = _loads(raw)
    return BookSnapshot(data["symbol"], data["ts_us"], data["depth"], data["bids"], data["asks"])


def _last_price(raw: bytes | str) -> LastPrice:
    return LastPrice(**_loads(raw))


def entry_id(raw: bytes | str) -> str:
    """A stream entry's id as text, whether the client decodes replies or not."""
    return raw.decode() if isinstance(raw, bytes) else raw


@dataclass(frozen=True, slots=True)
class RecentHistory:
    """The hot state's recent closed candles at one instant (see
    :meth:`HotStateReader.recent_history`): the stream id to read after, each symbol's candles
    of the streamed timeframe, and those of the higher timeframes by (symbol, timeframe);
    oldest first."""

    last_id: str
    candles: dict[str, list[Candle]]
    higher: dict[tuple[str, str], list[Candle]] = field(default_factory=dict)


@dataclass(slots=True)
class CyclePoll:
    """What one trading-loop cycle read: new closed candles and trades (with the stream ids to
    read after next time), the latest prices and books, and the streamer's heartbeat (None
    when there is none: the streamer has not written one for ``HEARTBEAT_TTL_S``)."""

    last_id: str
    trades_id: str | None
    candles: list[Candle] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    prices: dict[str, LastPrice] = field(default_factory=dict)
    books: dict[str, BookSnapshot] = field(default_factory=dict)
    extra: dict[str, list[tuple[bytes, dict[bytes, bytes]]]] = field(default_factory=dict)
    heartbeat: Heartbeat | None = None


def _heartbeat(raw: bytes | str) -> Heartbeat:
    """A heartbeat as read; fields of a newer revision are ignored."""
    known = {f.name for f in fields(Heartbeat)}
    return Heartbeat(**{k: v for k, v in _loads(raw).items() if k in known})


class HotStatePublisher:
    """The streamer's side: prices, tickers, books, forming and closed candles, its heartbeat."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def publish(
        self,
        prices: Sequence[LastPrice],
        forming: Sequence[Candle],
        closed: Sequence[Candle],
        heartbeat: Heartbeat | Mapping[str, int | str],
        *,
        tickers: Sequence[Ticker] = (),
        books: Sequence[BookSnapshot] = (),
        trades: Sequence[Trade] = (),
    ) -> None:
        """Publish one batch in a single round trip, atomically (MULTI/EXEC): a reader sees
        all of it or none of it.

        ``closed`` may hold candles of any timeframe, and corrected versions of candles
        published before: each goes to its timeframe's stream and replaces its bucket in the
        recent-candles set.
        """
        if isinstance(heartbeat, Heartbeat):
            beat: dict[str, object] = asdict(heartbeat)
        else:  # a producer's own counters: written as given, stamped with the revision
            beat = {"contract": CONTRACT_REVISION, **heartbeat}
        pipe = self._client.pipeline(transaction=True)
        for last in prices:
            pipe.set(price_key(last.symbol), json.dumps(asdict(last)), ex=PRICE_TTL_S)
        for ticker in tickers:
            pipe.set(ticker_key(ticker.symbol), json.dumps(asdict(ticker)), ex=TICKER_TTL_S)
        for book in books:
            pipe.set(book_key(book.symbol), json.dumps(asdict(book)), ex=BOOK_TTL_S)
        for candle in forming:
            pipe.set(forming_candle_key(candle.symbol, candle.timeframe), _candle_json(candle),
                     ex=CANDLE_TTL_S)
        recent_keys = set()
        for candle in closed:
            value = _candle_json(candle)
            pipe.xadd(closed_candles_stream(candle.timeframe), {"c": value},
                      maxlen=CLOSED_CANDLES_MAXLEN, approximate=True)
            key = recent_candles_key(candle.symbol, candle.timeframe)
            score = candle.open_time_us  # exact as a double: < 2**53
            pipe.zremrangebyscore(key, score, score)
            pipe.zadd(key, {value: score})
            recent_keys.add(key)
        for key in recent_keys:
            pipe.zremrangebyrank(key, 0, -RECENT_CANDLES_CAP - 1)
            pipe.expire(key, RECENT_CANDLES_TTL_S)
        if trades:
            # One entry per batch: the consumer reads the tape batch by batch, not trade by trade.
            pipe.xadd(TRADES_STREAM, {"t": json.dumps([_trade_row(t) for t in trades])},
                      maxlen=TRADE_BATCHES_MAXLEN, approximate=True)
        pipe.set(HEARTBEAT_KEY, json.dumps(beat), ex=HEARTBEAT_TTL_S)
        pipe.execute()


class HotStateReader:
    """The executor's and Dagster's side: reads what the streamer published."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        # poll's last value of each price and book key, raw and parsed: a value published again
        # unchanged (most books between two trades) is not parsed again.
        self._polled_prices: dict[str, tuple[bytes, LastPrice | None]] = {}
        self._polled_books: dict[str, tuple[bytes, BookSnapshot | None]] = {}
        self._polled_heartbeat: tuple[bytes, Heartbeat | None] | None = None

    def last_prices(self, symbols: Sequence[str]) -> dict[str, LastPrice]:
        """Latest trade price per symbol; symbols with no fresh price are absent."""
        values = self._client.mget([price_key(s) for s in symbols])
        found = {}
        for raw in values:
            if raw is not None:
                last = LastPrice(**_loads(raw))
                found[last.symbol] = last
        return found

    def tickers(self, symbols: Sequence[str]) -> dict[str, Ticker]:
        """Latest ticker per symbol; symbols with no fresh ticker are absent."""
        values = self._client.mget([ticker_key(s) for s in symbols])
        found = [Ticker(**_loads(raw)) for raw in values if raw is not None]
        return {ticker.symbol: ticker for ticker in found}

    def books(self, symbols: Sequence[str]) -> dict[str, BookSnapshot]:
        """Latest top of book per symbol; symbols with no fresh book are absent."""
        values = self._client.mget([book_key(s) for s in symbols])
        found = [_book_snapshot(raw) for raw in values if raw is not None]
        return {book.symbol: book for book in found}

    def forming_candle(self, symbol: str, timeframe: str = "1m") -> Candle | None:
        """The candle still forming for ``symbol`` and ``timeframe``, if fresh."""
        raw = self._client.get(forming_candle_key(symbol, timeframe))
        return None if raw is None else Candle(**_loads(raw))

    def recent_candles(self, symbol: str, timeframe: str = "1m",
                       limit: int = RECENT_CANDLES_CAP) -> list[Candle]:
        """The last ``limit`` closed candles of ``symbol`` and ``timeframe``, oldest first,
        each in its latest (corrected) version."""
        # Asked without scores, ZRANGE answers the members alone.
        members = cast(list[bytes], self._client.zrange(recent_candles_key(symbol, timeframe), -limit, -1))
        return [Candle(**_loads(value)) for value in members]

    def recent_history(
        self, symbols: Sequence[str], limit: int = RECENT_CANDLES_CAP, *, timeframe: str = "1m",
        higher: Sequence[str] = (),
    ) -> RecentHistory:
        """Where to start reading the closed-candle stream of ``timeframe``, the recent closed
        candles of each of ``symbols`` (as :meth:`recent_candles`) up to that point, and those
        of the ``higher`` timeframes too.

        Read in one MULTI/EXEC: the publisher writes a candle to the stream and to its recent
        set in one transaction too, so every candle returned is at or before the returned
        stream id and every later one comes after it. The id is "0" for a stream not yet
        written.
        """
        series = [(symbol, tf) for tf in (timeframe, *higher) for symbol in symbols]
        pipe = self._client.pipeline(transaction=True)
        pipe.xrevrange(closed_candles_stream(timeframe), count=1)
        for symbol, tf in series:
            pipe.zrange(recent_candles_key(symbol, tf), -limit, -1)
        newest, *sets = pipe.execute()
        candles = {key: [Candle(**_loads(value)) for value in raw] for key, raw in zip(series, sets, strict=True)}
        return RecentHistory(
            last_id=entry_id(newest[0][0]) if newest else "0",
            candles={symbol: candles[(symbol, timeframe)] for symbol in symbols},
            higher={key: found for key, found in candles.items() if key[1] != timeframe},
        )

    def closed_candles_after(
        self, last_id: str, count: int = 1000, *, timeframe: str = "1m"
    ) -> tuple[str, list[Candle]]:
        """Closed candles of ``timeframe`` published after stream id ``last_id`` ("0" for all),
        oldest first. A corrected candle comes again with the same open time: the later wins."""
        reply = xread_streams(self._client.xread({closed_candles_stream(timeframe): last_id}, count=count))
        if not reply:
            return last_id, []
        entries = reply[0][1]
        candles = _stream_entries(closed_candles_stream(timeframe), entries, b"c", _candle)
        return entry_id(entries[-1][0]), candles

    def closed_candles_up_to(self, last_id: str, count: int, *, timeframe: str = "1m") -> list[Candle]:
        """The last ``count`` closed candles of ``timeframe`` published at or before stream id
        ``last_id``, oldest first, as published (a correction is a later entry of its own): the
        history a loop that had processed the stream up to ``last_id`` has seen."""
        entries = cast(list[StreamEntry], self._client.xrevrange(closed_candles_stream(timeframe), max=last_id,
                                                                 count=count))
        return [Candle(**_loads(fields[b"c"])) for _, fields in reversed(entries)]

    def heartbeat(self) -> dict[str, Any] | None:
        """The streamer's heartbeat as a JSON object (see :meth:`streamer_heartbeat`)."""
        raw = self._client.get(HEARTBEAT_KEY)
        return None if raw is None else _loads(raw)

    def streamer_heartbeat(self) -> Heartbeat | None:
        """The streamer's heartbeat, typed; fields of a newer revision are ignored."""
        raw = self._client.get(HEARTBEAT_KEY)
        return None if raw is None else _heartbeat(raw)

    def poll(
        self, last_id: str, symbols: Sequence[str], count: int = 1000, *, timeframe: str = "1m",
        trades_after: str | None = None, extra_streams: Mapping[str, str] | None = None,
        block_ms: int | None = None,
    ) -> CyclePoll:
        """One round trip for a trading-loop cycle: the closed candles after ``last_id`` (as
        :meth:`closed_candles_after`), the latest prices and books of ``symbols`` (as
        :meth:`last_prices` and :meth:`books`), and, with ``trades_after``, the public trades
        published after that id of the trade stream ("$" on a first call: only new ones);
        ``extra_streams`` (name -> id) are read in the same XREAD, their raw entries returned
        for their own readers (the decision stream).

        With ``block_ms`` the read waits up to that long for a new entry on any of the streams;
        the prices and books are then read as of the moment it returned (Redis runs a blocked
        client's next commands only after it unblocks).

        A price or book whose published value has not changed since the previous poll comes
        back as the very object returned then (``is``-identical), not parsed again; so does the
        streamer's heartbeat, read in the same round trip (a malformed one is logged and None)."""
        candle_stream = closed_candles_stream(timeframe)
        streams: dict[KeyT, StreamIdT] = {candle_stream: last_id}
        if trades_after is not None:
            streams[TRADES_STREAM] = trades_after
        streams.update(extra_streams or {})
        pipe = self._client.pipeline(transaction=False)
        pipe.xread(streams, count=count, block=block_ms)
        if trades_after == "$":  # "$" returns nothing without blocking: anchor on the newest id
            pipe.xrevrange(TRADES_STREAM, count=1)
        pipe.mget([price_key(s) for s in symbols] + [book_key(s) for s in symbols] + [HEARTBEAT_KEY])
        replies = pipe.execute()
        reply, values = replies[0], replies[-1]
        result = CyclePoll(last_id=last_id, trades_id=trades_after)
        if trades_after == "$":
            newest_trades = replies[1]
            result.trades_id = entry_id(newest_trades[0][0]) if newest_trades else "0"
        for stream, entries in reply or ():
            name = stream.decode() if isinstance(stream, bytes) else stream
            if name == candle_stream:
                result.candles = _stream_entries(name, entries, b"c", _candle)
                result.last_id = entry_id(entries[-1][0])
            elif name == TRADES_STREAM:
                result.trades = [trade for batch in _stream_entries(name, entries, b"t", _trades) for trade in batch]
                result.trades_id = entry_id(entries[-1][0])
            else:
                result.extra[name] = entries
        for symbol, raw in zip(symbols, values[:len(symbols)], strict=True):
            last = None if raw is None else self._parsed(symbol, price_key(symbol), raw, _last_price,
                                                         self._polled_prices)
            if last:
                result.prices[symbol] = last
        result.heartbeat = self._polled_beat(values[-1])
        for symbol, raw in zip(symbols, values[len(symbols):-1], strict=True):
            book = None if raw is None else self._parsed(symbol, book_key(symbol), raw, _book_snapshot,
                                                         self._polled_books)
            if book:
                result.books[symbol] = book
        return result

    def _polled_beat(self, raw: bytes | None) -> Heartbeat | None:
        """The heartbeat of ``raw``, parsed once per value written."""
        if raw is None:
            return None
        known = self._polled_heartbeat
        if known is not None and known[0] == raw:
            return known[1]
        try:
            beat: Heartbeat | None = _heartbeat(raw)
        except (ValueError, TypeError, AttributeError) as error:
            log.error("the streamer heartbeat is malformed, ignored: %s", error)
            beat = None
        self._polled_heartbeat = (raw, beat)
        return beat

    @staticmethod
    def _parsed(
        symbol: str, key: str, raw: bytes, parse: Callable[[bytes], _Polled],
        polled: dict[str, tuple[bytes, _Polled | None]],
    ) -> _Polled | None:
        """``raw`` parsed, or the object parsed from the same bytes at the previous poll; None
        (logged once) for a value of another symbol than ``symbol``, whose key it was read from."""
        known = polled.get(key)
        if known is not None and known[0] == raw:
            return known[1]
        try:
            value = parse(raw)
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            log.error("the hot-state key %s holds a malformed value, ignored: %s", key, error)
            polled[key] = (raw, None)
            return None
        if value.symbol != symbol:
            log.error("the hot-state key %s holds a value of %s: ignored", key, value.symbol)
            polled[key] = (raw, None)
            return None
        polled[key] = (raw, value)
        return value
