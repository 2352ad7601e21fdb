"""Redis out of reach under the executor's feed: the feed says so, retries, and reads on when the
server is back; the loop is not stopped and the failed reads count for the failure breaker.

The Redis taken down is one this test starts itself (the embedded server), never a shared one.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from streamer.executor.feed import HotStateFeed
from triplegain_core.contracts.hot_state import HotStatePublisher, HotStateReader
from triplegain_core.model.market import US_PER_MINUTE, Candle
from triplegain_core.storage.embedded import embedded_redis_url

SYMBOL = "XRP/USDT"
T0 = 1_780_000_000 * 1_000_000 // US_PER_MINUTE * US_PER_MINUTE
WAIT_S = 10.0


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
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    url = embedded_redis_url(tmp_path / "redis")
    client = redis.Redis.from_url(url)
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
        restarted = redis.Redis.from_url(embedded_redis_url(tmp_path / "redis"))
        HotStatePublisher(restarted).publish([], [], _candles(3, 2), {"ts_us": 0})
        assert _taken_until(feed, 2) == _candles(3, 2)
        assert feed.unreachable_since is None and not feed.failed
    messages = [r.getMessage() for r in caplog.records]
    assert sum("out of reach" in m for m in messages) == 1  # said once, not on every retry
    assert any("answers again" in m for m in messages)
    restarted.shutdown(nosave=True)
