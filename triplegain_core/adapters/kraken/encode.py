"""Encoding Kraken's WebSocket API v2 frames (shapes in :mod:`triplegain_core.adapters.kraken.messages`):
the server's messages, as the replay exchange sends them, and the client's requests, as the
streamer sends them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import orjson

from triplegain_core.adapters.kraken.book import KrakenBookLevel
from triplegain_core.adapters.kraken.messages import (
    INSTRUMENT_CHANNEL,
    OHLC_CHANNEL,
    TICKER_CHANNEL,
    TRADE_CHANNEL,
    KrakenBookData,
    KrakenInstrumentPair,
    KrakenOhlcBar,
    KrakenTicker,
    MessageKind,
    us_to_rfc3339,
)
from triplegain_core.model.market import Trade


def _now_text() -> str:
    return us_to_rfc3339(time.time_ns() // 1000)


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def _with_req_id(message: dict[str, Any], req_id: int | None) -> dict[str, Any]:
    if req_id is not None:
        message["req_id"] = req_id
    return message


def _channel_params(channel: str, symbols: Sequence[str], snapshot: bool, depth: int | None,
                    interval: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"channel": channel}
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
    result: dict[str, Any] = {"channel": channel}
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
    message: dict[str, Any] = {"error": error, "success": False}
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
    assets: dict[str, dict[str, Any]] = {}
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
