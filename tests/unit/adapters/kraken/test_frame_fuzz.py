"""Fuzzing the streamer's frame handling: random, truncated and mutated frames of every
channel end as a counted rejection (or a valid message), never as an exception, and never as
unbounded work (a damaged year once made the streamer fill centuries of quiet minutes)."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streamer.ingest.connection import TradeStreamer
from triplegain_core.adapters.kraken.book import KrakenBookLevel, book_checksum
from triplegain_core.adapters.kraken.encode import (
    encode_book,
    encode_heartbeat,
    encode_instrument,
    encode_ohlc,
    encode_pong,
    encode_status,
    encode_subscribe_ack,
    encode_ticker,
    encode_trades,
)
from triplegain_core.adapters.kraken.messages import (
    KrakenBookData,
    KrakenFrameError,
    KrakenInstrumentPair,
    KrakenOhlcBar,
    KrakenTicker,
    KrakenTradeMessage,
)
from triplegain_core.adapters.kraken.parse import parse_server_message
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import HotStatePublisher
from triplegain_core.model.market import Side, Trade
from triplegain_core.storage.market_store import MarketStore

START = 1_767_571_200_000_000
# The streamer's clock in these tests: an hour after the frames' times, whatever today's date,
# so the outcome of a frame does not depend on the day the test runs.
CLOCK_S = START / 1_000_000 + 3600
SYMBOLS = ("XRP/USDT", "BTC/USDT")
_BIDS = (KrakenBookLevel(Decimal("0.51230"), Decimal("10.00000000")),
         KrakenBookLevel(Decimal("0.51220"), Decimal("3.50000000")))
_ASKS = (KrakenBookLevel(Decimal("0.51250"), Decimal("0.00100000")),)
VALID_FRAMES = [
    encode_trades([Trade("XRP/USDT", 7, START, 0.5123, 10.0, Side.BUY, "limit"),
                   Trade("XRP/USDT", 8, START + 1, 0.5124, 2.5, Side.SELL)]),
    encode_trades([Trade("XRP/USDT", 1, START, 0.5, 1.0, Side.SELL)], kind="snapshot"),
    encode_book(KrakenBookData("XRP/USDT", _BIDS, _ASKS, book_checksum(_ASKS, _BIDS)), "snapshot"),
    encode_book(KrakenBookData("XRP/USDT", _BIDS[:1], (), 12345, START)),
    encode_ohlc([KrakenOhlcBar("XRP/USDT", 0.5, 0.6, 0.4, 0.55, 12, 100.0, 0.52, START, 1, START)]),
    encode_ticker([KrakenTicker("XRP/USDT", 0.51, 10.0, 0.52, 5.0, 0.515, 1e6, 0.5, 0.4, 0.6,
                          -0.01, -1.9, START)]),
    encode_instrument([KrakenInstrumentPair("XRP/USDT", "XRP", "USDT", "online", 5, 1e-5, 8, 1e-8,
                                      1e-8, 0.5)]),
    encode_status(), encode_heartbeat(), encode_pong(3), encode_subscribe_ack("XRP/USDT"),
]


@st.composite
def damaged_frames(draw: st.DrawFn) -> str | bytes:
    """A valid frame of some channel, cut short, with a character replaced or inserted, or
    plain random text or bytes."""
    how = draw(st.sampled_from(["cut", "replace", "insert", "text", "bytes", "valid"]))
    if how == "text":
        return draw(st.text(max_size=200))
    if how == "bytes":
        return draw(st.binary(max_size=200))
    frame = draw(st.sampled_from(VALID_FRAMES))
    if how == "valid":
        return frame
    at = draw(st.integers(0, len(frame)))
    if how == "cut":
        return frame[:at]
    char = draw(st.sampled_from([*list('{}[]",:0123456789.-eE ntfalsu\\'), "\x00", "é"]))
    if how == "replace":
        return frame[:at] + char + frame[at + 1:]
    return frame[:at] + char + frame[at:]


@pytest.fixture
def streamer(db: psycopg.Connection, redis_client: redis.Redis) -> TradeStreamer:
    settings_ = Settings(ws_url="ws://127.0.0.1:9/v2", symbols=SYMBOLS)
    return TradeStreamer(settings_, MarketStore(db), HotStatePublisher(redis_client),
                         wall_clock=lambda: CLOCK_S)


def _rejected(message: object, streamer: TradeStreamer) -> bool:
    """Whether the streamer rejects a well-formed ``message``: a trade of a symbol it did not
    subscribe to, or one stamped further ahead of its clock than the policy allows."""
    if not isinstance(message, KrakenTradeMessage):
        return False
    latest_us = (CLOCK_S + streamer.policy.max_clock_lead_s) * 1_000_000
    return any(trade.symbol not in SYMBOLS or trade.ts_us > latest_us
               for trade in message.trades)


# The frame that took the test process to 23.5 GB: a valid trade frame whose year lost a digit
# to a "9", after which the streamer filled every quiet minute of 900 years.
CENTURIES_AHEAD = VALID_FRAMES[0].replace("2026-", "2926-")


@settings(deadline=None, max_examples=600,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damaged_frames())
@example(CENTURIES_AHEAD)
def test_damaged_frames_are_counted_never_raised(streamer: TradeStreamer,
                                                 frame: str | bytes) -> None:
    before = streamer.stats.rejected_frames
    streamer.on_frame(frame)  # must not raise, whatever the frame
    try:
        message = parse_server_message(frame)
    except KrakenFrameError:
        assert streamer.stats.rejected_frames == before + 1
        return
    assert streamer.stats.rejected_frames == before + _rejected(message, streamer)


@settings(deadline=None, max_examples=200,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(damaged_frames(), max_size=20))
@example([VALID_FRAMES[0], CENTURIES_AHEAD])
def test_the_stream_goes_on_after_garbage(streamer: TradeStreamer,
                                          garbage: list[str | bytes]) -> None:
    """Whatever came before, a good trade in sequence is applied once."""
    for frame in garbage:
        streamer.on_frame(frame)
    trades_before = streamer.stats.trades
    next_id = streamer.sequencer.next_id("BTC/USDT")
    trade_id = next_id if next_id is not None else 100
    good = encode_trades([Trade("BTC/USDT", trade_id, START + 10**9, 60_000.0, 0.5, Side.BUY)])
    streamer.on_frame(good)
    streamer.on_frame(good)
    assert streamer.stats.trades == trades_before + 1


def test_a_trade_stamped_far_ahead_of_the_clock_is_rejected_and_closes_nothing(
        streamer: TradeStreamer) -> None:
    """The next trade in sequence, but stamped 900 years on: rejected, naming the lead; no
    minute of those years is taken for quiet, and the true next trade is applied after it."""
    streamer.on_frame(VALID_FRAMES[0])  # ids 7 and 8, in START's minute
    centuries = 900 * 365 * 86_400 * 1_000_000
    streamer.on_frame(encode_trades([Trade("XRP/USDT", 9, START + centuries, 0.5, 1.0, Side.BUY)]))
    assert streamer.stats.rejected_frames == 1
    assert streamer.closed_before("XRP/USDT", "1m") == START
    streamer.on_frame(encode_trades([Trade("XRP/USDT", 9, START + 90 * 10**6, 0.5, 1.0, Side.BUY)]))
    assert streamer.stats.trades == 3
    assert streamer.closed_before("XRP/USDT", "1m") == START + 60 * 10**6


def test_the_clock_lead_is_named_in_the_rejection(streamer: TradeStreamer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    lead_s = streamer.policy.max_clock_lead_s + 60
    ts_us = int((CLOCK_S + lead_s) * 1_000_000)
    streamer.on_frame(encode_trades([Trade("XRP/USDT", 7, ts_us, 0.5, 1.0, Side.BUY)]))
    assert streamer.stats.rejected_frames == 1
    assert "XRP/USDT trade 7 stamped 360 s ahead of this machine's clock (more than 300 s" \
        in caplog.text
