"""The market the executor benchmarks trade, and how they publish it as the streamer would.

The real XRP/USDT candles of ``../shared/data`` (relabelled as consecutive 1m candles) laid on
BTC/USDT, XRP/USDT and XRP/BTC at each pair's price scale; between two candle closes, one
streamer batch per 100 ms cycle with a trade, its price and a fresh book per pair.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import psycopg
import redis

from streamer.executor.loop import TradingLoop
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import HotStatePublisher, HotStateReader
from triplegain_core.decisions.intake import DecisionIntake
from triplegain_core.model.market import US_PER_MINUTE, Candle, Side, Trade, datetime_to_us
from triplegain_core.model.quotes import BookSnapshot, LastPrice
from triplegain_core.storage.checkpoints import CheckpointStore
from triplegain_core.storage.control_store import ControlStore, ControlWatch
from triplegain_core.storage.trading_store import TradingStore

PAIRS = {"BTC/USDT": 50_000.0, "XRP/USDT": 1.0, "XRP/BTC": 2e-5}
WARM_MINUTES = 1200  # 240 5m candles and 20 1h candles of history before measuring
BATCHES_PER_MINUTE = 600  # one per cycle of a 100 ms loop
BATCH_US = 100_000


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def three_pair_minutes(shared_data: Path) -> list[list[Candle]]:
    """Each minute's closed 1m candles of the three pairs."""
    frame = pd.read_parquet(shared_data / "binance_xrp-usdt-perp_5m.parquet")
    start = datetime_to_us(frame["ts"].iloc[0].to_pydatetime())
    return [
        [Candle(symbol, "1m", start + i * US_PER_MINUTE, row.open * k, row.high * k, row.low * k, row.close * k,
                float(row.volume), 1) for symbol, k in PAIRS.items()]
        for i, row in enumerate(frame.itertuples())
    ]


def _book(candle: Candle, ts_us: int) -> BookSnapshot:
    price, step = candle.close, candle.close * 0.0002
    return BookSnapshot(candle.symbol, ts_us, 10,
                        tuple((price - step * (i + 1), 1.0 + i) for i in range(10)),
                        tuple((price + step * (i + 1), 1.5 + i) for i in range(10)))


def publish_batch(publisher: HotStatePublisher, minute: list[Candle], batch: int) -> None:
    """One streamer batch ``batch`` cycles after the minute's close: a trade, a price, a book per pair."""
    ts_us = minute[0].close_time_us + batch * BATCH_US
    trade_id = (minute[0].open_time_us // US_PER_MINUTE) * BATCHES_PER_MINUTE + batch
    trades = [Trade(c.symbol, trade_id, ts_us, c.close, 1.0, Side.BUY if batch % 2 else Side.SELL) for c in minute]
    publisher.publish([LastPrice(c.symbol, c.close, ts_us) for c in minute], [], [], {"ts_us": 0},
                      books=[_book(c, ts_us) for c in minute], trades=trades)


def warm_loop(minutes: list[list[Candle]], client: redis.Redis, db: psycopg.Connection,
              decisions: DecisionIntake, control_watch: ControlWatch | None = None) -> TradingLoop:
    """The loop as `triplegain execute` builds it (with its decision intake: see
    :func:`tests.support.decisions.executor_intake`; checkpointing each cycle, reading control
    commands when ``control_watch`` sees one), its history filled with the first
    ``WARM_MINUTES`` minutes and its cycle statistics cleared."""
    publisher = HotStatePublisher(client)
    trail = TradingStore(db)
    settings = Settings()
    loop = TradingLoop(settings, HotStateReader(client), trail, start_stream_id="0", decisions=decisions,
                       checkpoints=CheckpointStore(db, settings.account, trail.transactions),
                       controls=ControlStore(db) if control_watch is not None else None, control_watch=control_watch)
    for start in range(0, WARM_MINUTES, 100):
        publisher.publish([], [], [c for minute in minutes[start:start + 100] for c in minute], {"ts_us": 0})
    while loop.cycle():
        pass
    loop.stats.cycle_ms.clear()
    loop.stats.decision_ms.clear()
    return loop
