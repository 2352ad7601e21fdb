"""The Kraken v2 codec: round trips, documented shapes, and malformed frames."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triplegain_core.adapters.kraken.book import KrakenBookLevel
from triplegain_core.adapters.kraken.encode import (
    encode_book,
    encode_error,
    encode_heartbeat,
    encode_instrument,
    encode_ohlc,
    encode_ping,
    encode_pong,
    encode_status,
    encode_subscribe,
    encode_subscribe_ack,
    encode_ticker,
    encode_trades,
)
from triplegain_core.adapters.kraken.messages import (
    KrakenBookData,
    KrakenBookMessage,
    KrakenErrorReply,
    KrakenFrameError,
    KrakenHeartbeat,
    KrakenInstrumentMessage,
    KrakenInstrumentPair,
    KrakenOhlcBar,
    KrakenOhlcMessage,
    KrakenPingRequest,
    KrakenPong,
    KrakenStatus,
    KrakenSubscribeAck,
    KrakenSubscribeRequest,
    KrakenTicker,
    KrakenTickerMessage,
    KrakenTradeMessage,
    rfc3339_to_us,
    us_to_rfc3339,
)
from triplegain_core.adapters.kraken.parse import parse_client_message, parse_server_message
from triplegain_core.model.market import Side, Trade

# The example trade message of Kraken's v2 documentation (trade channel).
DOC_TRADE = (
    '{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"sell",'
    '"price":0.5117,"qty":40.0,"ord_type":"market","trade_id":4665906,'
    '"timestamp":"2023-09-25T07:49:37.708706Z"}]}'
)
TRADE = Trade("XRP/USDT", 17, 1_695_628_177_708_706, 0.5117, 40.0, Side.SELL, "market")


def test_documented_trade_message_parses_to_typed_trades() -> None:
    message = parse_server_message(DOC_TRADE)
    assert message == KrakenTradeMessage("update", [
        Trade("MATIC/USD", 4665906, 1_695_628_177_708_706, 0.5117, 40.0, Side.SELL, "market")
    ])


def test_trades_round_trip_exactly() -> None:
    trades = [TRADE, Trade("BTC/USDT", 2**62, 0, 60_000.1, 1e-8, Side.BUY, "limit"),
              Trade("XRP/BTC", 3, 1_767_571_203_073_000, 9.160642597063099e-06, 87.02276762,
                    Side.BUY)]
    for kind in ("update", "snapshot"):
        assert parse_server_message(encode_trades(trades, kind)) == KrakenTradeMessage(kind, trades)


def test_integer_prices_and_quantities_are_floats() -> None:
    frame = DOC_TRADE.replace("0.5117", "2").replace("40.0", "40")
    trade = parse_server_message(frame).trades[0]
    assert (trade.price, trade.qty) == (2.0, 40.0)
    assert type(trade.price) is float and type(trade.qty) is float


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-09-25T07:49:37.708706Z", 1_695_628_177_708_706),
        ("2023-09-25T07:49:37Z", 1_695_628_177_000_000),
        ("2023-09-25T07:49:37.7Z", 1_695_628_177_700_000),
        ("2023-09-25T07:49:37.708706999Z", 1_695_628_177_708_706),
        ("1970-01-01T00:00:00.000000Z", 0),
        ("2024-02-29T23:59:59.999999Z", 1_709_251_199_999_999),
    ],
)
def test_rfc3339_parse(text: str, expected: int) -> None:
    assert rfc3339_to_us(text) == expected


@given(st.integers(min_value=0, max_value=253_402_300_799_999_999))
def test_rfc3339_round_trip(ts_us: int) -> None:
    assert rfc3339_to_us(us_to_rfc3339(ts_us)) == ts_us


@pytest.mark.parametrize(
    "text",
    ["2023-13-25T07:49:37Z", "2023-02-30T07:49:37Z", "2023-09-25T24:00:00Z",
     "2023-09-25 07:49:37Z", "2023-09-25T07:49:37", "2023-09-25T07:49:37+01:00",
     "2023-09-25T07:49:37.Z", "\uff12\uff10\uff12\uff13-09-25T07:49:37Z", ""],
)
def test_bad_timestamps_are_frame_errors(text: str) -> None:
    with pytest.raises(KrakenFrameError):
        rfc3339_to_us(text)


def test_subscribe_request_round_trip_and_shape() -> None:
    frame = encode_subscribe(["BTC/USDT", "XRP/BTC"], req_id=11)
    assert json.loads(frame) == {
        "method": "subscribe",
        "params": {"channel": "trade", "symbol": ["BTC/USDT", "XRP/BTC"], "snapshot": False},
        "req_id": 11,
    }
    assert parse_client_message(frame) == KrakenSubscribeRequest("trade", ("BTC/USDT", "XRP/BTC"),
                                                           False, 11)
    unsubscribe = encode_subscribe(["BTC/USDT"], method="unsubscribe")
    assert parse_client_message(unsubscribe).method == "unsubscribe"


def test_ping_pong_round_trip() -> None:
    assert parse_client_message(encode_ping(101)) == KrakenPingRequest(101)
    assert parse_client_message(encode_ping()) == KrakenPingRequest(None)
    pong = parse_server_message(encode_pong(101, "2022-12-25T09:30:59.123456Z"))
    assert isinstance(pong, KrakenPong) and pong.req_id == 101
    assert pong.time_in_us == rfc3339_to_us("2022-12-25T09:30:59.123456Z")
    assert pong.time_out_us is not None


def test_subscribe_ack_echoes_req_id_and_result() -> None:
    frame = encode_subscribe_ack("BTC/USDT", req_id=11, time_in="2022-12-25T09:30:59.123456Z")
    raw = json.loads(frame)
    assert raw["result"] == {"channel": "trade", "snapshot": False, "symbol": "BTC/USDT"}
    assert raw["success"] is True and raw["req_id"] == 11 and "time_out" in raw
    ack = parse_server_message(frame)
    assert isinstance(ack, KrakenSubscribeAck)
    assert (ack.success, ack.channel, ack.symbol, ack.req_id) == (True, "trade", "BTC/USDT", 11)


def test_error_acks() -> None:
    frame = encode_error("Currency pair not supported XBT/USD", "subscribe", 11, "XBT/USD")
    ack = parse_server_message(frame)
    assert isinstance(ack, KrakenSubscribeAck)
    assert (ack.success, ack.symbol, ack.error, ack.req_id) == (
        False, "XBT/USD", "Currency pair not supported XBT/USD", 11)
    rejected = parse_server_message(encode_error("Malformed request"))
    assert rejected == KrakenErrorReply("Malformed request")


def test_heartbeat_and_status() -> None:
    assert json.loads(encode_heartbeat()) == {"channel": "heartbeat"}
    assert parse_server_message(encode_heartbeat()) == KrakenHeartbeat()
    status = parse_server_message(encode_status("maintenance", 42, "2.0.9"))
    assert status == KrakenStatus("maintenance", "v2", 42, "2.0.9")


def _trade_frame(**changes: object) -> str:
    item = {"symbol": "XRP/USDT", "side": "buy", "price": 0.5, "qty": 10.0,
            "ord_type": "limit", "trade_id": 1, "timestamp": "2023-09-25T07:49:37.708706Z"}
    item.update(changes)
    item = {k: v for k, v in item.items() if v is not _DROP}
    return json.dumps({"channel": "trade", "type": "update", "data": [item]})


_DROP = object()


@pytest.mark.parametrize(
    "frame",
    [
        "not json", "", "[1, 2]", "null", '"trade"', b"\xff\xfe\x00",
        '{"channel":"trade","type":"update"}',
        '{"channel":"trade","type":"update","data":{}}',
        '{"channel":"trade","type":"delta","data":[]}',
        '{"channel":"trade","type":"update","data":[1]}',
        '{"channel":"book","type":"update","data":[]}',
        '{"channel":"status","type":"update","data":[{"system":"exploded"}]}',
        '{"channel":"status","type":"update","data":[]}',
        '{"method":"subscribe","success":true}',
        '{"method":"pong","req_id":"7"}',
        '{"hello":"world"}',
        '{"channel":"trade","type":"update","data":[{"price":NaN}]}',
        "[" * 100_000,
        _trade_frame(price=float("nan")), _trade_frame(price=float("inf")),
        _trade_frame(price=0), _trade_frame(price=-1.0), _trade_frame(qty=0.0),
        _trade_frame(price="0.5"), _trade_frame(qty=True), _trade_frame(price=10**400),
        _trade_frame(side="long"), _trade_frame(side=["buy"]), _trade_frame(trade_id=1.5),
        _trade_frame(trade_id=-1), _trade_frame(trade_id=2**63), _trade_frame(ord_type="stop"),
        _trade_frame(ord_type=["limit"]), _trade_frame(symbol=""), _trade_frame(symbol=5),
        _trade_frame(timestamp=1695628177), _trade_frame(timestamp="yesterday"),
        _trade_frame(symbol=_DROP), _trade_frame(timestamp=_DROP), _trade_frame(qty=_DROP),
    ],
)
def test_malformed_server_frames_raise_frame_error(frame: str | bytes) -> None:
    with pytest.raises(KrakenFrameError):
        parse_server_message(frame)


@pytest.mark.parametrize(
    "frame",
    [
        "{}", '{"method":"subscribe"}', '{"method":"subscribe","params":{"channel":"trade"}}',
        '{"method":"subscribe","params":{"channel":"trade","symbol":[]}}',
        '{"method":"subscribe","params":{"channel":"trade","symbol":"BTC/USDT"}}',
        '{"method":"subscribe","params":{"channel":"trade","symbol":["A"],"snapshot":1}}',
        '{"method":"ping","req_id":true}', '{"method":"add_order"}', "pong",
    ],
)
def test_malformed_client_frames_raise_frame_error(frame: str) -> None:
    with pytest.raises(KrakenFrameError):
        parse_client_message(frame)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                   max_size=4),
    max_leaves=10,
)


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_frame_error(frame: bytes) -> None:
    for parse in (parse_server_message, parse_client_message):
        with contextlib.suppress(KrakenFrameError):
            parse(frame)


@given(st.integers(min_value=0, max_value=len(DOC_TRADE)))
def test_truncated_frames_only_raise_frame_error(cut: int) -> None:
    with contextlib.suppress(KrakenFrameError):
        parse_server_message(DOC_TRADE[:cut])


_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_trade_items = st.fixed_dictionaries({}, optional={
    "symbol": st.sampled_from(["XRP/USDT", ""]) | _scalars,
    "side": st.sampled_from(["buy", "sell"]) | _scalars,
    "price": st.floats() | _scalars,
    "qty": st.floats() | _scalars,
    "ord_type": st.sampled_from(["limit", "market"]) | _scalars,
    "trade_id": st.integers() | _scalars,
    "timestamp": st.sampled_from(["2023-09-25T07:49:37.708706Z", "2023-02-29T00:00:00Z"])
    | _scalars,
    "extra": _scalars,
})


@settings(deadline=None)
@given(_trade_items)
def test_random_trade_items_only_raise_frame_error(item: dict) -> None:
    frame = json.dumps({"channel": "trade", "type": "update", "data": [item]})
    try:
        message = parse_server_message(frame)
    except KrakenFrameError:
        return
    trade = message.trades[0]
    assert trade.price > 0 and trade.qty > 0 and isinstance(trade.side, Side)


@settings(deadline=None)
@given(_json_values)
def test_random_json_only_raises_frame_error(value: object) -> None:
    frame = json.dumps(value)
    for parse in (parse_server_message, parse_client_message):
        with contextlib.suppress(KrakenFrameError):
            parse(frame)


# --- the other public channels --------------------------------------------------------------

# Kraken's documented ohlc and ticker examples (spot WebSocket v2).
DOC_OHLC = (
    '{"channel":"ohlc","type":"update","timestamp":"2023-10-04T16:26:30.524394914Z","data":['
    '{"symbol":"MATIC/USD","open":0.5624,"high":0.5628,"low":0.5622,"close":0.5627,'
    '"trades":12,"volume":1468.78667473,"vwap":0.5626,"interval_begin":'
    '"2023-10-04T16:25:00.000000000Z","interval":5,"timestamp":"2023-10-04T16:30:00.000000Z"}]}'
)
DOC_TICKER = (
    '{"channel":"ticker","type":"snapshot","data":[{"symbol":"ALGO/USD","bid":0.10025,'
    '"bid_qty":740.0,"ask":0.10036,"ask_qty":1361.44813783,"last":0.10035,'
    '"volume":997038.98383185,"vwap":0.10148,"low":0.09979,"high":0.10285,"change":-0.00017,'
    '"change_pct":-0.17}]}'
)


def test_documented_ohlc_and_ticker_parse() -> None:
    ohlc = parse_server_message(DOC_OHLC)
    assert ohlc == KrakenOhlcMessage("update", [KrakenOhlcBar(
        "MATIC/USD", 0.5624, 0.5628, 0.5622, 0.5627, 12, 1468.78667473, 0.5626,
        rfc3339_to_us("2023-10-04T16:25:00Z"), 5, rfc3339_to_us("2023-10-04T16:30:00Z"))])
    ticker = parse_server_message(DOC_TICKER)
    assert ticker == KrakenTickerMessage("snapshot", [KrakenTicker(
        "ALGO/USD", 0.10025, 740.0, 0.10036, 1361.44813783, 0.10035, 997038.98383185, 0.10148,
        0.09979, 0.10285, -0.00017, -0.17)])


def test_ohlc_ticker_instrument_and_book_round_trip() -> None:
    bar = KrakenOhlcBar("XRP/USDT", 0.5, 0.6, 0.4, 0.55, 3, 12.5, 0.52, 1_767_571_200_000_000, 1,
                  1_767_571_230_000_000)
    assert parse_server_message(encode_ohlc([bar])) == KrakenOhlcMessage("update", [bar])
    ticker = KrakenTicker("BTC/USDT", 60_000.1, 1.5, 60_000.2, 0.25, 60_000.15, 100.0, 59_999.0,
                    59_000.0, 61_000.0, -12.5, -0.02, 1_767_571_230_000_000)
    assert parse_server_message(encode_ticker([ticker])) == KrakenTickerMessage("update", [ticker])
    pair = KrakenInstrumentPair("XRP/BTC", "XRP", "BTC", "online", 8, 1e-8, 8, 1e-8, 1e-8, 0.00002)
    assert parse_server_message(encode_instrument([pair])) == KrakenInstrumentMessage("snapshot",
                                                                                [pair])
    book = KrakenBookData("XRP/USDT", (KrakenBookLevel(Decimal("0.51230"), Decimal("10.00000000")),),
                    (KrakenBookLevel(Decimal("0.51250"), Decimal("0")),), 42, 1_767_571_230_000_000)
    frame = encode_book(book)
    assert '"price":0.51230,"qty":10.00000000' in frame  # exact decimal text on the wire
    parsed = parse_server_message(frame)
    assert parsed == KrakenBookMessage("update", [book])
    assert str(parsed.books[0].bids[0].qty) == "10.00000000"


def test_channel_subscriptions_round_trip() -> None:
    book = encode_subscribe(["BTC/USDT"], "book", snapshot=True, req_id=3, depth=25)
    assert json.loads(book)["params"] == {"channel": "book", "symbol": ["BTC/USDT"],
                                          "depth": 25, "snapshot": True}
    assert parse_client_message(book) == KrakenSubscribeRequest("book", ("BTC/USDT",), True, 3,
                                                          "subscribe", 25, None)
    ohlc = parse_client_message(encode_subscribe(["XRP/BTC"], "ohlc", interval=1))
    assert (ohlc.channel, ohlc.interval) == ("ohlc", 1)
    instrument = encode_subscribe([], "instrument", snapshot=True)
    assert "symbol" not in json.loads(instrument)["params"]
    assert parse_client_message(instrument).symbols == ()
    ack = parse_server_message(encode_subscribe_ack("BTC/USDT", "book", True, 3, depth=25))
    assert (ack.channel, ack.symbol, ack.success) == ("book", "BTC/USDT", True)


@pytest.mark.parametrize(
    "frame",
    [
        '{"channel":"book","type":"snapshot","data":[{"symbol":"A/B","bids":[],"asks":[]}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[{"price":-1,'
        '"qty":1}],"asks":[],"checksum":1}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[{"price":1,'
        '"qty":-0.5}],"asks":[],"checksum":1}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[],"asks":[{"price":'
        '"1.0","qty":1}],"checksum":1}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[],"asks":[],'
        '"checksum":4294967296}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[{"price":1e999999,'
        '"qty":1}],"asks":[],"checksum":1}]}',
        '{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[{"price":NaN,'
        '"qty":1}],"asks":[],"checksum":1}]}',
        DOC_OHLC.replace('"interval":5', '"interval":7'),
        DOC_OHLC.replace('"trades":12', '"trades":-1'),
        DOC_OHLC.replace('"open":0.5624', '"open":0'),
        DOC_TICKER.replace('"bid":0.10025', '"bid":"0.1"'),
        DOC_TICKER.replace('"change":-0.00017', '"change":null'),
        '{"channel":"instrument","type":"snapshot","data":{"pairs":[{"symbol":"A/B"}]}}',
        '{"channel":"instrument","type":"snapshot","data":[]}',
    ],
)
def test_malformed_channel_frames_raise_frame_error(frame: str) -> None:
    with pytest.raises(KrakenFrameError):
        parse_server_message(frame)


@pytest.mark.parametrize(
    "frame",
    ['{"method":"subscribe","params":{"channel":"book","symbol":["A"],"depth":7}}',
     '{"method":"subscribe","params":{"channel":"ohlc","symbol":["A"],"interval":2}}'],
)
def test_bad_depth_or_interval_is_refused(frame: str) -> None:
    with pytest.raises(KrakenFrameError):
        parse_client_message(frame)
