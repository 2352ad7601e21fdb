"""The trading loop on real Redis and PostgreSQL, fed real candles through the hot-state contract."""

from __future__ import annotations

import asyncio

import pandas as pd
import psycopg
import pytest

from streamer.executor import TradingLoop
from triplegain_core.config import Settings
from triplegain_core.hot_state import HotStatePublisher, HotStateReader, LastPrice
from triplegain_core.market import US_PER_MINUTE, Candle, datetime_to_us
from triplegain_core.orders import OrderPurpose
from triplegain_core.positions import PositionStatus
from triplegain_core.signals import Direction
from triplegain_core.storage.trading_store import TradingStore


def _real_candles(shared_data, symbol: str = "XRP/USDT") -> list[Candle]:
    """Real XRP/USDT 5m candles, relabelled as consecutive 1m candles of the loop's pair."""
    frame = pd.read_parquet(shared_data / "binance_xrp-usdt-perp_5m.parquet")
    start = datetime_to_us(frame["ts"].iloc[0].to_pydatetime())
    return [
        Candle(symbol, "1m", start + i * US_PER_MINUTE, row.open, row.high, row.low, row.close,
               row.volume, 1)
        for i, row in enumerate(frame.itertuples())
    ]


@pytest.fixture
def loop(db: psycopg.Connection, redis_client) -> TradingLoop:
    settings = Settings(symbols=("XRP/USDT",))
    return TradingLoop(settings, HotStateReader(redis_client), TradingStore(db), start_stream_id="0")


def test_loop_trades_real_candles_within_the_risk_rules(
    loop: TradingLoop, redis_client, db: psycopg.Connection, shared_data
) -> None:
    candles = _real_candles(shared_data)
    publisher = HotStatePublisher(redis_client)
    for start in range(0, len(candles), 250):
        publisher.publish([], [], candles[start:start + 250], {"ts_us": 0})
    while loop.cycle():
        pass

    assert loop.stats.candles == len(candles)
    store = TradingStore(db)
    counts = store.activity_counts("paper")
    assert counts["signals"] == loop.stats.signals > 0
    assert counts["fills"] > 0
    assert all(approved for _, _, approved in store.fills_with_checks("paper"))

    by_time = {c.close_time_us: c for c in candles}
    for position in store.positions("paper"):
        assert position.entry_notional_usdt <= 0.2 * position.equity_at_entry_usdt * (1 + 1e-9)
        stop_distance = abs(position.entry_price - position.stop_loss) / position.entry_price
        assert stop_distance <= 0.02 + 0.0006  # 2 % from the signal's entry, plus slippage
        if position.status is PositionStatus.CLOSED and position.exit_reason is OrderPurpose.STOP_LOSS:
            exit_candle = by_time[datetime_to_us(position.closed_at)]
            if position.direction is Direction.LONG:
                assert exit_candle.low <= position.stop_loss
            else:
                assert exit_candle.high >= position.stop_loss

    # every position change was persisted, and every close came with its exit fill
    events = db.execute("SELECT event, count(*) FROM position_events GROUP BY event").fetchall()
    closed = sum(p.status is PositionStatus.CLOSED for p in store.positions("paper"))
    assert dict(events).get("closed", 0) == closed
    assert counts["fills"] == counts["orders"] == len(store.positions("paper")) + closed
    assert len(store.snapshots("paper")) > 0


def test_stop_enforced_on_a_live_tick(
    loop: TradingLoop, redis_client, db: psycopg.Connection, shared_data
) -> None:
    candles = _real_candles(shared_data)
    publisher = HotStatePublisher(redis_client)
    opened = None
    for candle in candles:
        publisher.publish([], [], [candle], {"ts_us": 0})
        loop.cycle()
        open_positions = [p for p in TradingStore(db).positions("paper") if p.status is PositionStatus.OPEN]
        if open_positions:
            opened = open_positions[0]
            break
    assert opened is not None, "the real candles must produce an entry"
    beyond_stop = opened.stop_loss * (0.99 if opened.direction is Direction.LONG else 1.01)
    publisher.publish([LastPrice("XRP/USDT", beyond_stop, candle.close_time_us + 1)], [], [], {"ts_us": 0})
    assert loop.cycle() == 0  # no candle: the tick check runs
    closed = next(p for p in TradingStore(db).positions("paper") if p.position_id == opened.position_id)
    assert closed.status is PositionStatus.CLOSED
    assert closed.exit_reason is OrderPurpose.STOP_LOSS


def test_run_stops_cleanly_and_records_a_final_snapshot(loop: TradingLoop, redis_client, shared_data) -> None:
    HotStatePublisher(redis_client).publish([], [], _real_candles(shared_data)[:50], {"ts_us": 0})

    async def run_briefly():
        stop = asyncio.Event()
        task = asyncio.create_task(loop.run(stop))
        await asyncio.sleep(0.35)
        stop.set()
        return await task

    stats = asyncio.run(run_briefly())
    assert stats.candles == 50
    assert stats.cycles >= 2
