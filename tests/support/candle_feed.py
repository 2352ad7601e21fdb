"""Feeding closed candles to a trading loop the way the streamer does, then letting it drain."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from streamer.executor.loop import TradingLoop
from triplegain_core.contracts.hot_state import HotStatePublisher
from triplegain_core.model.market import Candle

BATCH = 250


def feed_and_drain(loop: TradingLoop, client: redis.Redis, candles: Sequence[Candle]) -> None:
    """Publish ``candles`` as closed candles in streamer-sized batches, then cycle the loop until
    it has processed them all."""
    publisher = HotStatePublisher(client)
    for start in range(0, len(candles), BATCH):
        publisher.publish([], [], candles[start:start + BATCH], {"ts_us": 0})
    while loop.cycle():
        pass
