"""The Redis hot-state contract: docs/HOT_STATE.md against the code, and round trips on a real
Redis (names, types, TTLs, caps, per-timeframe streams, corrections)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import redis

from streamer.executor.loop import TradingLoop
from triplegain_core.config import Settings
from triplegain_core.contracts import decision_streams, hot_state
from triplegain_core.contracts.decision_streams import DecisionStream, StrongSignalStream
from triplegain_core.contracts.hot_state import (
    CONTRACT,
    CONTRACT_REVISION,
    PREFIX,
    RECENT_CANDLES_CAP,
    Heartbeat,
    HotStatePublisher,
    HotStateReader,
    KeySpec,
)
from triplegain_core.decisions.published import PublishedDecision, StrongSignal
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.model.market import TIMEFRAME_US, TIMEFRAMES, US_PER_MINUTE, Candle, Side, Trade, datetime_to_us
from triplegain_core.model.quotes import BookSnapshot, LastPrice, Ticker
from triplegain_core.model.signals import Direction
from triplegain_core.storage.trading_store import TradingStore

DOC = Path(__file__).resolve().parents[3] / "docs" / "HOT_STATE.md"
T0 = datetime_to_us(datetime(2026, 1, 5, tzinfo=UTC))
DECISION = PublishedDecision.make(
    "d-1", "llm:consensus", "consensus",
    TradingDecision(action=Action.LONG, symbol="XRP/USDT", confidence=0.7, position_size_pct=5.0,
                    leverage=1.0, entry=0.5, stop_loss=0.495, take_profit=0.52,
                    invalidation="close below 0.49", reasoning="trend", model="consensus"),
    T0)
STRONG_SIGNAL = StrongSignal(signal_id="s-1", strategy="trend_momentum", symbol="XRP/USDT",
                             direction=Direction.LONG, strength=0.9, ts_us=T0)


def _candle(minute: int, close: float = 101.0, symbol: str = "BTC/USDT", timeframe: str = "1m"
            ) -> Candle:
    start = T0 + minute * TIMEFRAME_US[timeframe]
    return Candle(symbol, timeframe, start, 100.0, 102.0, 99.0, close, 1.5, 3)


def _book(ts_us: int = T0, symbol: str = "XRP/USDT") -> BookSnapshot:
    return BookSnapshot(symbol, ts_us, 3, ((0.5, 10.0), (0.49, 20.0)),
                        ((0.51, 5.0), (0.52, 1.0), (0.53, 2.5)))


def _ticker(symbol: str = "XRP/USDT") -> Ticker:
    return Ticker(symbol, T0, 0.5, 10.0, 0.51, 5.0, 0.505, 1e6, 0.502, 0.48, 0.52, 0.01, 2.0)


def _documented_contract() -> tuple[str, list[KeySpec]]:
    text = DOC.read_text()
    table = text.split("<!-- contract-table:start -->")[1].split("<!-- contract-table:end -->")[0]
    rows = [line for line in table.strip().splitlines()[2:] if line.startswith("|")]
    specs = []
    for row in rows:
        name, kind, _, ttl, cap = (cell.strip() for cell in row.strip("|").split("|"))
        specs.append(KeySpec(name.strip("`"), kind, None if ttl == "-" else int(ttl),
                             None if cap == "-" else int(cap)))
    return text, specs


def _matches(spec: KeySpec, name: str) -> bool:
    pattern = re.sub(r"\\{\w+\\}", "[^:]+", re.escape(PREFIX + spec.pattern))
    return re.fullmatch(pattern, name) is not None


def test_the_written_contract_equals_the_code() -> None:
    text, documented = _documented_contract()
    assert documented == list(CONTRACT)
    assert f"version {hot_state.CONTRACT_VERSION}, revision {CONTRACT_REVISION}" in text
    assert f"`{PREFIX}`" in text
    # Every name the module builds matches exactly one documented pattern.
    names = [hot_state.price_key("XRP/USDT"), hot_state.ticker_key("XRP/USDT"),
             hot_state.book_key("XRP/USDT"), hot_state.HEARTBEAT_KEY,
             decision_streams.DECISIONS_STREAM, decision_streams.STRONG_SIGNALS_STREAM, hot_state.TRADES_STREAM]
    for timeframe in TIMEFRAMES:
        names += [hot_state.forming_candle_key("XRP/BTC", timeframe),
                  hot_state.recent_candles_key("XRP/BTC", timeframe),
                  hot_state.closed_candles_stream(timeframe)]
    for name in names:
        assert sum(bool(_matches(spec, name)) for spec in CONTRACT) == 1, name
    # The 1.0 names the executor already reads are unchanged.
    assert hot_state.CLOSED_CANDLES_STREAM == "tg:v1:stream:candles:1m"
    assert hot_state.forming_candle_key("BTC/USDT") == "tg:v1:candle:1m:BTC/USDT"


def test_every_key_has_its_documented_type_and_ttl(redis_client: redis.Redis) -> None:
    HotStatePublisher(redis_client).publish(
        [LastPrice("XRP/USDT", 0.5, T0)], [_candle(0, timeframe="5m")],
        [_candle(0, timeframe="5m")], Heartbeat(T0, trades=3), tickers=[_ticker()],
        books=[_book()], trades=[Trade("XRP/USDT", 1, T0, 0.5, 10.0, Side.BUY)],
    )
    DecisionStream(redis_client).publish(DECISION)
    StrongSignalStream(redis_client).publish(STRONG_SIGNAL)
    keys = sorted(k.decode() for k in redis_client.keys(PREFIX + "*"))
    assert len(keys) == len(CONTRACT)  # one key of each kind
    for key in keys:
        (spec,) = [s for s in CONTRACT if _matches(s, key)]
        assert redis_client.type(key).decode() == spec.redis_type, key
        ttl = redis_client.ttl(key)
        if spec.ttl_s is None:
            assert ttl == -1, key
        else:
            assert 0 < ttl <= spec.ttl_s, key


def test_round_trip_of_every_value(redis_client: redis.Redis) -> None:
    publisher, reader = HotStatePublisher(redis_client), HotStateReader(redis_client)
    forming = [_candle(3, timeframe=tf) for tf in TIMEFRAMES]
    publisher.publish([LastPrice("BTC/USDT", 100.0, T0 + 61_000_000)], forming, [],
                      Heartbeat(T0, trades=4, candles=2, late_trades=1),
                      tickers=[_ticker(), _ticker("XRP/BTC")], books=[_book()])
    assert reader.last_prices(["BTC/USDT", "XRP/USDT"]) == {
        "BTC/USDT": LastPrice("BTC/USDT", 100.0, T0 + 61_000_000)}
    assert reader.tickers(["XRP/USDT", "XRP/BTC", "BTC/USDT"]) == {
        "XRP/USDT": _ticker(), "XRP/BTC": _ticker("XRP/BTC")}
    assert reader.books(["XRP/USDT", "BTC/USDT"]) == {"XRP/USDT": _book()}
    for candle in forming:
        assert reader.forming_candle("BTC/USDT", candle.timeframe) == candle
    assert reader.forming_candle("BTC/USDT") == forming[0]
    assert reader.streamer_heartbeat() == Heartbeat(T0, trades=4, candles=2, late_trades=1)
    assert reader.heartbeat()["contract"] == CONTRACT_REVISION


def test_a_producers_own_heartbeat_counters_pass_through(redis_client: redis.Redis) -> None:
    HotStatePublisher(redis_client).publish([], [], [], {"ts_us": T0, "trades": 9,
                                                         "some_future_counter": 5})
    reader = HotStateReader(redis_client)
    assert reader.heartbeat() == {"contract": CONTRACT_REVISION, "ts_us": T0, "trades": 9,
                                  "some_future_counter": 5}
    assert reader.streamer_heartbeat() == Heartbeat(T0, trades=9)


def test_closed_candles_go_to_their_timeframes_stream_and_corrections_replace(
    redis_client: redis.Redis,
) -> None:
    publisher, reader = HotStatePublisher(redis_client), HotStateReader(redis_client)
    first = [_candle(m) for m in range(3)] + [_candle(0, timeframe="5m")]
    publisher.publish([], [], first, {"ts_us": T0})
    last_id, one_minute = reader.closed_candles_after("0")
    assert one_minute == first[:3]
    assert reader.closed_candles_after("0", timeframe="5m")[1] == first[3:]
    corrected = _candle(1, close=99.5)
    publisher.publish([], [], [corrected], {"ts_us": T0})
    _, newer = reader.closed_candles_after(last_id)
    assert newer == [corrected]  # the same bucket again: the later entry wins
    assert reader.recent_candles("BTC/USDT") == [first[0], corrected, first[2]]
    assert reader.recent_candles("BTC/USDT", limit=2) == [corrected, first[2]]
    assert reader.recent_candles("BTC/USDT", "5m") == first[3:]
    with pytest.raises(ValueError, match="timeframe"):
        reader.closed_candles_after("0", timeframe="2m")


def test_recent_candles_are_capped(redis_client: redis.Redis) -> None:
    publisher, reader = HotStatePublisher(redis_client), HotStateReader(redis_client)
    total = RECENT_CANDLES_CAP + 150
    for start in range(0, total, 400):
        publisher.publish([], [], [_candle(m) for m in range(start, min(total, start + 400))],
                          {"ts_us": T0})
    recent = reader.recent_candles("BTC/USDT")
    assert len(recent) == RECENT_CANDLES_CAP
    assert [c.open_time_us for c in recent] == [
        T0 + m * US_PER_MINUTE for m in range(150, total)]


def test_the_executor_reads_only_one_minute_candles(
    redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    publisher = HotStatePublisher(redis_client)
    minutes = [_candle(m, symbol="XRP/USDT") for m in range(10)]
    higher = [_candle(m, symbol="XRP/USDT", timeframe=tf) for tf in ("5m", "15m", "1h", "1d")
              for m in range(2)]
    publisher.publish([], [], minutes[:5] + higher, {"ts_us": T0})
    publisher.publish([], [], [_candle(2, close=90.0, symbol="XRP/USDT"), *minutes[5:]],
                      {"ts_us": T0})
    loop = TradingLoop(Settings(symbols=("XRP/USDT",)), HotStateReader(redis_client),
                       TradingStore(db), start_stream_id="0")
    while loop.cycle():
        pass
    assert loop.stats.candles == len(minutes)  # the correction of minute 2 is not a new candle


def test_malformed_books_are_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        BookSnapshot("XRP/USDT", T0, 0, (), ())
    with pytest.raises(ValueError, match="levels > depth"):
        BookSnapshot("XRP/USDT", T0, 1, ((0.5, 1.0), (0.4, 1.0)), ())
    with pytest.raises(ValueError, match="ordered"):
        BookSnapshot("XRP/USDT", T0, 5, ((0.4, 1.0), (0.5, 1.0)), ())
    with pytest.raises(ValueError, match="ordered"):
        BookSnapshot("XRP/USDT", T0, 5, (), ((0.6, 1.0), (0.5, 1.0)))
    with pytest.raises(ValueError, match="positive"):
        BookSnapshot("XRP/USDT", T0, 5, ((0.5, float("nan")),), ())
    with pytest.raises(ValueError, match="positive"):
        BookSnapshot("XRP/USDT", T0, 5, (), ((-1.0, 1.0),))


def test_one_poll_reads_new_candles_new_trades_prices_and_books(redis_client: redis.Redis) -> None:
    publisher, reader = HotStatePublisher(redis_client), HotStateReader(redis_client)
    tape = [Trade("XRP/USDT", i, T0 + i, 0.5 + i / 1000, 1.0 + i, Side.BUY if i % 2 else Side.SELL)
            for i in range(1, 4)]
    publisher.publish([LastPrice("XRP/USDT", 0.503, T0 + 3)], [], [_candle(0, symbol="XRP/USDT")],
                      Heartbeat(T0), books=[_book()], trades=tape[:2])
    first = reader.poll("0", ["XRP/USDT", "BTC/USDT"], trades_after="0")
    assert first.candles == [_candle(0, symbol="XRP/USDT")] and first.trades == tape[:2]
    assert set(first.prices) == {"XRP/USDT"} and first.books == {"XRP/USDT": _book()}
    publisher.publish([], [], [], Heartbeat(T0), trades=tape[2:])
    second = reader.poll(first.last_id, ["XRP/USDT"], trades_after=first.trades_id)
    assert second.candles == [] and second.trades == tape[2:] and second.last_id == first.last_id
    # A live loop starting at "$" is anchored on the newest batch: it reads only what follows.
    live = reader.poll("0", ["XRP/USDT"], trades_after="$")
    assert live.trades == [] and live.trades_id == second.trades_id
    # Without trades_after the tape is not read at all.
    assert reader.poll("0", ["XRP/USDT"]).trades == []


@pytest.mark.parametrize("bad", [
    b"not json", b'{"symbol": "XRP/USDT"}', b"[1, 2]",
    b'{"symbol": "XRP/USDT", "timeframe": "1m", "open_time_us": 0, "open": "x", "high": 1, "low": 1,'
    b' "close": 1, "volume": 1, "trade_count": 1}',
    b'{"symbol": "XRP/USDT", "timeframe": "1m", "open_time_us": 0, "open": 1, "high": 0.5, "low": 1,'
    b' "close": 1, "volume": 1, "trade_count": 1}',
    b'{"symbol": "XRP/USDT", "timeframe": "1m", "open_time_us": 0, "open": NaN, "high": 1, "low": 1,'
    b' "close": 1, "volume": 1, "trade_count": 1}',
])
def test_a_malformed_stream_entry_is_logged_and_skipped(
    redis_client: redis.Redis, bad: bytes, caplog: pytest.LogCaptureFixture,
) -> None:
    publisher, reader = HotStatePublisher(redis_client), HotStateReader(redis_client)
    before, after = _candle(0, symbol="XRP/USDT"), _candle(1, symbol="XRP/USDT")
    tape = [Trade("XRP/USDT", 1, T0 + 1, 0.5, 1.0, Side.BUY)]
    publisher.publish([], [], [before], Heartbeat(T0), trades=tape)
    redis_client.xadd(hot_state.CLOSED_CANDLES_STREAM, {"c": bad})
    redis_client.xadd(hot_state.TRADES_STREAM, {"t": bad})
    redis_client.xadd(hot_state.TRADES_STREAM, {"wrong field": b"[]"})
    redis_client.set(hot_state.price_key("XRP/USDT"), bad)
    redis_client.set(hot_state.book_key("XRP/USDT"), bad)
    publisher.publish([], [], [after], Heartbeat(T0), trades=[Trade("XRP/USDT", 2, T0 + 2, 0.5, 1.0, Side.SELL)])

    polled = reader.poll("0", ["XRP/USDT"], trades_after="0")
    # The entries around the bad ones are read, in order; the bad ones are named and skipped.
    assert polled.candles == [before, after]
    assert [t.trade_id for t in polled.trades] == [1, 2]
    assert polled.prices == {} and polled.books == {}
    assert reader.closed_candles_after("0")[1] == [before, after]
    skipped = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert any(hot_state.CLOSED_CANDLES_STREAM in m for m in skipped)
    assert sum(hot_state.TRADES_STREAM in m for m in skipped) == 2
