"""The trading loop's hot-state feed thread on real Redis and PostgreSQL: what it gathers, when
it wakes, how it fails, and that a fed loop trades exactly as a loop reading Redis itself."""

from __future__ import annotations

import dataclasses
import json
import time

import pandas as pd
import psycopg
import pytest
import redis

from streamer.executor.feed import HotStateFeed
from streamer.executor.loop import TradingLoop
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.contracts.decision_streams import DecisionStream
from triplegain_core.contracts.hot_state import (
    HotStatePublisher,
    HotStateReader,
    book_key,
    closed_candles_stream,
    price_key,
)
from triplegain_core.decisions.intake import DecisionIntake
from triplegain_core.decisions.published import PublishedDecision
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.model.market import US_PER_MINUTE, Candle, Side, Trade, datetime_to_us, us_to_datetime
from triplegain_core.model.quotes import BookSnapshot, LastPrice
from triplegain_core.storage.trading_store import TradingStore

pytestmark = pytest.mark.integration

SYMBOL = "XRP/USDT"
T0 = 1_780_000_000 * 1_000_000 // US_PER_MINUTE * US_PER_MINUTE
WAIT_S = 5.0


def _candles(minutes: int, start: int = 0, price: float = 0.5) -> list[Candle]:
    return [Candle(SYMBOL, "1m", T0 + m * US_PER_MINUTE, price, price * 1.001, price * 0.999, price, 100.0, 5)
            for m in range(start, start + minutes)]


def _book(price: float, ts_us: int) -> BookSnapshot:
    return BookSnapshot(SYMBOL, ts_us, 3, tuple((price - 0.001 * (i + 1), 10.0) for i in range(3)),
                        tuple((price + 0.001 * (i + 1), 10.0) for i in range(3)))


def _reads_past(feed: HotStateFeed, reads: int) -> None:
    """Wait until the feed has made more than ``reads`` reads (so a publication before is in)."""
    deadline = time.monotonic() + WAIT_S
    while feed.reads <= reads:
        assert time.monotonic() < deadline, "the feed stopped reading"
        time.sleep(0.001)


def test_the_feed_gathers_every_publication_between_two_takes_in_stream_order(redis_client: redis.Redis) -> None:
    publisher = HotStatePublisher(redis_client)
    candles = _candles(30)
    with HotStateFeed(HotStateReader(redis_client), [SYMBOL], "0", trades_after="0") as feed:
        for batch, start in enumerate(range(0, 30, 10)):
            reads = feed.reads
            ts_us = candles[start + 9].close_time_us
            trades = [Trade(SYMBOL, start + i, ts_us, 0.5, 1.0, Side.BUY) for i in range(1, 4)]
            publisher.publish([LastPrice(SYMBOL, 0.5 + batch, ts_us)], [], candles[start:start + 10], {"ts_us": 0},
                              trades=trades)
            _reads_past(feed, reads + 1)  # read in its own round trip, apart from the next batch
        polled = feed.take()
        assert polled.candles == candles
        assert [t.trade_id for t in polled.trades] == [1, 2, 3, 11, 12, 13, 21, 22, 23]
        assert polled.prices[SYMBOL].price == 2.5  # the latest, not the first
        again = feed.take()  # nothing new: no candle twice, the prices still known
        assert again.candles == [] and again.trades == []
        assert again.prices[SYMBOL].price == 2.5 and again.last_id == polled.last_id
        assert not feed.wait_fresh(0.05)


def test_a_price_or_book_without_a_stream_entry_arrives_and_an_unchanged_one_is_not_news(
    redis_client: redis.Redis,
) -> None:
    publisher = HotStatePublisher(redis_client)
    with HotStateFeed(HotStateReader(redis_client), [SYMBOL], "0", idle_ms=5) as feed:
        publisher.publish([LastPrice(SYMBOL, 0.51, T0)], [], [], {"ts_us": 0}, books=[_book(0.51, T0)])
        assert feed.wait_fresh(WAIT_S)
        first = feed.take()
        assert first.prices[SYMBOL] == LastPrice(SYMBOL, 0.51, T0)
        assert first.books[SYMBOL].bids[0].price == pytest.approx(0.509)

        # The same publication again: read (the feed keeps reading) but not parsed again, not news.
        reads = feed.reads
        publisher.publish([LastPrice(SYMBOL, 0.51, T0)], [], [], {"ts_us": 0}, books=[_book(0.51, T0)])
        _reads_past(feed, reads + 2)
        assert not feed.wait_fresh(0.05)
        second = feed.take()
        assert second.prices[SYMBOL] is first.prices[SYMBOL] and second.books[SYMBOL] is first.books[SYMBOL]

        publisher.publish([], [], [], {"ts_us": 0}, books=[_book(0.52, T0 + 1)])
        assert feed.wait_fresh(WAIT_S)
        assert feed.take().books[SYMBOL].ts_us == T0 + 1


def test_a_price_or_book_filed_under_another_symbol_is_logged_and_left_out(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture,
) -> None:
    reader = HotStateReader(redis_client)
    redis_client.set(price_key(SYMBOL), json.dumps({"symbol": "BTC/USDT", "price": 50_000.0, "ts_us": T0}))
    redis_client.set(book_key(SYMBOL), json.dumps(dataclasses.asdict(_book(0.5, T0))))
    for _ in range(3):  # logged when read, not again on every poll of the same value
        polled = reader.poll("0", [SYMBOL])
        assert polled.prices == {} and polled.books[SYMBOL].ts_us == T0
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        f"the hot-state key {price_key(SYMBOL)} holds a value of BTC/USDT: ignored"]


def test_a_malformed_entry_is_skipped_and_the_feed_reads_on(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture,
) -> None:
    # It used to stop the feed, and the loop with it: one bad entry on the stream ended trading.
    publisher = HotStatePublisher(redis_client)
    feed = HotStateFeed(HotStateReader(redis_client), [SYMBOL], "0")
    candles = _candles(5)
    with feed:
        publisher.publish([], [], candles[:3], {"ts_us": 0})
        assert feed.wait_fresh(WAIT_S)
        redis_client.xadd(closed_candles_stream("1m"), {"c": "{not json"})
        publisher.publish([], [], candles[3:], {"ts_us": 0})
        taken: list = []
        deadline = time.monotonic() + WAIT_S
        while len(taken) < len(candles):
            assert time.monotonic() < deadline, f"the feed read {len(taken)} of {len(candles)} candles"
            taken += feed.take().candles
            time.sleep(0.001)
        assert not feed.failed and taken == candles
    assert any("malformed, skipped" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def _loop(db: psycopg.Connection, client: redis.Redis, account: str, *, decisions: bool = False) -> TradingLoop:
    settings = Settings(symbols=(SYMBOL,), account=account,
                        strategies=StrategySettings(enabled=("ema9_trend_flip", "mean_reversion", "order_flow",
                                                             "market_making")))
    intake = DecisionIntake(DecisionStream(client), start_id="0") if decisions else None
    return TradingLoop(settings, HotStateReader(client), TradingStore(db), start_stream_id="0", decisions=intake)


def _real_candles(shared_data) -> list[Candle]:
    frame = pd.read_parquet(shared_data / "binance_xrp-usdt-perp_5m.parquet").iloc[:1500]
    start = datetime_to_us(frame["ts"].iloc[0].to_pydatetime()) // US_PER_MINUTE * US_PER_MINUTE
    return [Candle(SYMBOL, "1m", start + i * US_PER_MINUTE, r.open, r.high, r.low, r.close, r.volume, 1)
            for i, r in enumerate(frame.itertuples())]


def _decision(account: str, minute_us: int, price: float) -> PublishedDecision:
    decision = TradingDecision(action=Action.LONG, symbol=SYMBOL, confidence=0.8, position_size_pct=10.0,
                               leverage=1.0, entry=price, stop_loss=price * 0.98, take_profit=price * 1.04,
                               invalidation="x", reasoning="y", model="claude")
    return PublishedDecision.make(f"d-{account}", "llm:claude", "claude", decision, minute_us, 3600)


def _trail(store: TradingStore, account: str) -> list[tuple]:
    return [(p.strategy, p.direction, p.entry_price, p.exit_price, p.opened_at, p.closed_at, p.realized_pnl_usdt)
            for p in store.positions(account)]


def test_a_fed_loop_trades_exactly_as_a_loop_reading_redis_itself(
    db: psycopg.Connection, redis_client: redis.Redis, shared_data,
) -> None:
    candles = _real_candles(shared_data)
    publisher = HotStatePublisher(redis_client)
    synchronous, fed = _loop(db, redis_client, "sync"), _loop(db, redis_client, "fed", decisions=True)
    # A decision published before any candle: the fed loop reads it at once and must hold it
    # until it knows the market's time, then trade it on its llm account (the LLM accounts are
    # named after the model alone, so only one of the two loops may read decisions).
    store = TradingStore(db)
    with fed.feeding() as feed:
        DecisionStream(redis_client).publish(_decision("x", candles[10].close_time_us, candles[10].close))
        assert feed.wait_fresh(WAIT_S)
        fed.cycle()
        assert fed.kernel.market_time_us is None and not store.positions("llm:claude")
        for start in range(0, len(candles), 50):
            batch = candles[start:start + 50]
            last = batch[-1]
            publisher.publish([], [], batch, {"ts_us": 0})
            assert feed.wait_fresh(WAIT_S)
            fed.cycle()
            synchronous.cycle()
            # Between two candle batches, a tape and a book: the strategies that read them trade too.
            ts_us = last.close_time_us + 1_000_000
            tape = [Trade(SYMBOL, start * 10 + i, ts_us, last.close, 50.0 if i % 4 else 5.0,
                          Side.BUY if (start // 50) % 2 else Side.SELL) for i in range(1, 25)]
            lean = 5000.0 if (start // 50) % 2 else 500.0
            book = BookSnapshot(SYMBOL, ts_us, 10,
                                tuple((last.close * (1 - 0.0002 * (i + 1)), lean) for i in range(10)),
                                tuple((last.close * (1 + 0.0002 * (i + 1)), 5500.0 - lean) for i in range(10)))
            publisher.publish([LastPrice(SYMBOL, last.close, ts_us)], [], [], {"ts_us": 0}, books=[book], trades=tape)
            assert feed.wait_fresh(WAIT_S)
            fed.cycle()
            synchronous.cycle()
    while synchronous.cycle():
        pass
    assert fed.stats.candles == synchronous.stats.candles == len(candles)
    assert synchronous.stats.fills > 0 and synchronous.stats.signals > 0
    names = [a.name.removeprefix("sync") for a in synchronous.kernel.accounts]
    assert [a.name for a in fed.kernel.accounts] == [f"fed{suffix}" for suffix in names] + ["llm:claude"]
    for suffix in names:
        assert _trail(store, f"fed{suffix}") == _trail(store, f"sync{suffix}")
        assert fed.kernel.account(f"fed{suffix}").stats == synchronous.kernel.account(f"sync{suffix}").stats
    assert store.positions("fed:order_flow") or store.positions("fed:market_making"), \
        "the strategies reading the tape and the book never traded"
    (position,) = store.positions("llm:claude")
    # Traded when the loop first knew the market, on the first batch of candles, at that market's
    # price: not at the candle the decision was timed at, nor at the price it stated.
    assert position.opened_at == us_to_datetime(candles[49].close_time_us)
    assert position.entry_price == pytest.approx(candles[49].close * 1.0005)
