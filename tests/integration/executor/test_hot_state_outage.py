"""Redis out of reach under the executor's feed: the feed says so, retries, and reads on when the
server is back; the loop is not stopped, the failed reads count for the failure breaker, and a stop
the market crossed meanwhile fills at the first price seen after.

The Redis taken down is one this test starts itself (the embedded server), never a shared one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import psycopg
import pytest
import redis

from streamer.executor.feed import HotStateFeed
from streamer.executor.loop import TradingLoop
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.contracts.hot_state import HotStatePublisher, HotStateReader
from triplegain_core.model.market import US_PER_MINUTE, Candle, us_to_datetime
from triplegain_core.model.orders import OrderPurpose
from triplegain_core.model.quotes import LastPrice
from triplegain_core.model.signals import IntentAction, TradeIntent
from triplegain_core.portfolio.positions import PositionStatus
from triplegain_core.storage.embedded import embedded_redis_url
from triplegain_core.storage.trading_store import TradingStore

SYMBOL = "XRP/USDT"
T0 = 1_780_000_000 * 1_000_000 // US_PER_MINUTE * US_PER_MINUTE
WAIT_S = 10.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[[], redis.Redis]]:
    """Starts (and starts again) an embedded Redis of the test's own: whatever runs is shut down
    at the end, even when the test fails."""
    clients: list[redis.Redis] = []

    def start() -> redis.Redis:
        client = redis.Redis.from_url(embedded_redis_url(tmp_path / "redis"))
        clients.append(client)
        return client

    yield start
    for client in clients:
        with suppress(redis.RedisError):
            client.shutdown(nosave=True)


def _candles(start: int, count: int) -> list[Candle]:
    return [Candle(SYMBOL, "1m", T0 + m * US_PER_MINUTE, 0.5, 0.501, 0.499, 0.5, 100.0, 3)
            for m in range(start, start + count)]


def _taken_until(feed: HotStateFeed, count: int) -> list[Candle]:
    taken: list[Candle] = []
    deadline = time.monotonic() + WAIT_S
    while len(taken) < count:
        assert time.monotonic() < deadline, f"the feed read {len(taken)} of {count} candles"
        taken += feed.take().candles
        time.sleep(0.005)
    return taken


def test_the_feed_survives_redis_going_away_and_reads_on_when_it_is_back(
    own_redis: Callable[[], redis.Redis], caplog: pytest.LogCaptureFixture,
) -> None:
    client = own_redis()
    feed = HotStateFeed(HotStateReader(client), [SYMBOL], "0")
    with feed:
        HotStatePublisher(client).publish([], [], _candles(0, 3), {"ts_us": 0})
        assert _taken_until(feed, 3) == _candles(0, 3)

        client.shutdown(nosave=True)
        deadline = time.monotonic() + WAIT_S
        while feed.unreachable_since is None:
            assert time.monotonic() < deadline, "the feed never noticed Redis was gone"
            time.sleep(0.01)
        time.sleep(0.5)  # several retries while the server is down
        assert not feed.failed and feed.take().candles == []
        failures = feed.take_failures()
        assert failures >= 2 and feed.take_failures() == 0

        # The server is back (empty: the embedded one keeps nothing): what is published now is read.
        HotStatePublisher(own_redis()).publish([], [], _candles(3, 2), {"ts_us": 0})
        assert _taken_until(feed, 2) == _candles(3, 2)
        assert feed.unreachable_since is None and not feed.failed
    messages = [r.getMessage() for r in caplog.records]
    assert sum("out of reach" in m for m in messages) == 1  # said once, not on every retry
    assert any("answers again" in m for m in messages)


def test_a_stop_crossed_while_redis_was_away_fills_at_the_first_price_seen_after(
    own_redis: Callable[[], redis.Redis], db: psycopg.Connection,
) -> None:
    client = own_redis()
    walk = [Candle(SYMBOL, "1m", T0 + m * US_PER_MINUTE, 0.5, 0.5001, 0.4999, 0.5, 100.0, 3) for m in range(60)]
    HotStatePublisher(client).publish([], [], walk, {"ts_us": 0})
    settings = Settings(symbols=(SYMBOL,), strategies=StrategySettings(enabled=(), technical_agent=False))
    loop = TradingLoop(settings, HotStateReader(client), TradingStore(db), start_stream_id="0")
    while loop.cycle():
        pass
    last = walk[-1]
    intent = TradeIntent(intent_id="watched", strategy="walk", tested=True, symbol=SYMBOL,
                         time=us_to_datetime(last.close_time_us), action=IntentAction.LONG, entry=0.5,
                         stop_loss=0.495, take_profit=0.55)
    assert loop.kernel.on_intent(intent).approved
    (position,) = loop.kernel.positions.open_positions()

    with loop.feeding() as feed:
        client.shutdown(nosave=True)
        deadline = time.monotonic() + WAIT_S
        while not loop.kernel.blind:
            assert time.monotonic() < deadline, "the loop never learnt the market could not be seen"
            loop.cycle()
            time.sleep(0.01)
        # Meanwhile the market fell through the stop and came back near it; the streamer, holding
        # what it received, publishes it all once Redis is back, with the price now.
        crossed = Candle(SYMBOL, "1m", T0 + 60 * US_PER_MINUTE, 0.5, 0.5, 0.49, 0.4992, 100.0, 3)
        seen = LastPrice(SYMBOL, 0.4971, crossed.close_time_us + 20_000_000)
        HotStatePublisher(own_redis()).publish([seen], [], [crossed], {"ts_us": 0})
        while loop.kernel.positions.open_positions():
            assert time.monotonic() < deadline and not feed.failed, "the stop was never acted on"
            loop.cycle()
            time.sleep(0.01)

    [closed] = [p for p in TradingStore(db).positions(settings.account) if p.position_id == position.position_id]
    assert closed.status is PositionStatus.CLOSED and closed.exit_reason is OrderPurpose.STOP_LOSS
    assert closed.exit_price == pytest.approx(seen.price * (1 - settings.slippage))  # not 0.495, never seen
    assert closed.closed_at == us_to_datetime(seen.ts_us)
    assert closed.exit_crossed_at == us_to_datetime(crossed.close_time_us)  # recorded as crossed while blind
    assert loop.kernel.guards.failures["read"] >= 1
