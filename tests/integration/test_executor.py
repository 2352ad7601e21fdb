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


# --- trade intents: leverage, exits managed each tick, every step stored

import math  # noqa: E402
import numpy as np  # noqa: E402

from triplegain_core.market import us_to_datetime  # noqa: E402
from triplegain_core.orders import OrderState  # noqa: E402
from triplegain_core.risk import RiskAdjustment, RiskReason  # noqa: E402
from triplegain_core.signals import IntentAction, TradeIntent  # noqa: E402

START_US = 1_700_000_000 * 1_000_000


def _walk(count: int = 60, seed: int = 5) -> list[Candle]:
    """A quiet random walk around 0.5 (too short for the TechnicalAgent, long enough for volatility)."""
    closes = 0.5 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.0005, count)))
    return [Candle("XRP/USDT", "1m", START_US + i * US_PER_MINUTE, c, c * 1.0002, c * 0.9998, c, 1000.0, 5)
            for i, c in enumerate(closes)]


def _warm(loop: TradingLoop, redis_client) -> tuple[HotStatePublisher, Candle]:
    candles = _walk()
    publisher = HotStatePublisher(redis_client)
    publisher.publish([], [], candles, {"ts_us": 0})
    while loop.cycle():
        pass
    return publisher, candles[-1]


def _intent(last: Candle, intent_id: str, action: IntentAction = IntentAction.LONG, **fields: object) -> TradeIntent:
    price = last.close
    values = dict(intent_id=intent_id, strategy="walk", tested=True, symbol="XRP/USDT",
                  time=us_to_datetime(last.close_time_us), action=action, entry=price,
                  stop_loss=price * 0.99, take_profit=price * 1.05)
    values.update(fields)
    return TradeIntent(**values)


def _tick(publisher: HotStatePublisher, price: float, ts_us: int) -> None:
    publisher.publish([LastPrice("XRP/USDT", price, ts_us)], [], [], {"ts_us": 0})


def test_leveraged_intent_and_its_invalidation_exit_are_stored(
    loop: TradingLoop, redis_client, db: psycopg.Connection
) -> None:
    publisher, last = _warm(loop, redis_client)
    price = last.close
    check = loop.on_intent(_intent(last, "lev", leverage=1e6, invalidation=price * 0.995))
    assert check.approved and check.leverage == 3.0  # huge leverage capped, recorded
    assert RiskAdjustment.LEVERAGE_CAPPED in check.adjustments
    assert RiskAdjustment.SIZE_REDUCED_BTC_CORRELATION in check.adjustments  # BTC correlation unknown
    store = TradingStore(db)
    [stored_check] = [c for c in store.risk_checks("paper") if c.check_id == check.check_id]
    assert stored_check == check
    [position] = [p for p in store.positions("paper") if p.status is PositionStatus.OPEN]
    assert position.leverage == 3.0 and position.loan > 0 and position.invalidation == pytest.approx(price * 0.995)
    assert loop.portfolio.liabilities[position.loan_asset] == pytest.approx(position.loan)
    entry_order = f"{position.position_id}:entry"
    assert store.order_states("paper")[entry_order] is OrderState.FILLED
    assert [e.state for e in store.order_events(entry_order)] == [OrderState.NEW, OrderState.FILLED]

    _tick(publisher, price * 0.994, last.close_time_us + 1_000_000)  # below invalidation, above the stop
    assert loop.cycle() == 0
    [closed] = [p for p in store.positions("paper") if p.position_id == position.position_id]
    assert closed.status is PositionStatus.CLOSED and closed.exit_reason is OrderPurpose.INVALIDATION
    assert closed.loan == 0.0 and closed.realized_pnl_usdt is not None
    assert not any(loop.portfolio.liabilities.values())
    fills = db.execute("SELECT loan_change FROM fills WHERE order_id LIKE %s ORDER BY time",
                       (f"{position.position_id}:%",)).fetchall()
    assert [math.copysign(1, f[0]) for f in fills] == [1.0, -1.0]


def test_trailing_stop_moves_on_ticks_and_closes_in_profit(
    loop: TradingLoop, redis_client, db: psycopg.Connection
) -> None:
    publisher, last = _warm(loop, redis_client)
    price = last.close
    assert loop.on_intent(_intent(last, "trail")).approved
    position = loop.positions.open_positions()[0]
    r = position.entry_price - position.stop_loss
    ts = last.close_time_us
    _tick(publisher, position.entry_price + 1.6 * r, ts + 1_000_000)
    loop.cycle()
    store = TradingStore(db)
    [moved] = [p for p in store.positions("paper") if p.position_id == position.position_id]
    assert moved.trailing_active and moved.stop_loss == pytest.approx(position.entry_price + 0.6 * r)
    events = db.execute("SELECT event FROM position_events WHERE position_id = %s ORDER BY time",
                        (position.position_id,)).fetchall()
    assert [e[0] for e in events] == ["opened", "stop_moved"]
    _tick(publisher, position.entry_price + 0.5 * r, ts + 2_000_000)
    loop.cycle()
    [closed] = [p for p in store.positions("paper") if p.position_id == position.position_id]
    assert closed.exit_reason is OrderPurpose.TRAILING_STOP
    assert closed.exit_price > price * 0.995  # closed well above the initial stop


def test_max_holding_close_intent_and_malformed_intents(
    loop: TradingLoop, redis_client, db: psycopg.Connection
) -> None:
    publisher, last = _warm(loop, redis_client)
    assert loop.on_intent(_intent(last, "short-lived", max_holding_s=60.0)).approved
    first = loop.positions.open_positions()[0]
    _tick(publisher, last.close, last.close_time_us + 61_000_000)
    loop.cycle()
    assert loop.positions.open_positions() == []
    store = TradingStore(db)
    assert {p.position_id: p.exit_reason for p in store.positions("paper")}[first.position_id] is OrderPurpose.MAX_HOLDING

    assert loop.on_intent(_intent(last, "again")).approved
    close = loop.on_intent(_intent(last, "close", action=IntentAction.CLOSE, stop_loss=None, take_profit=None))
    assert close.approved and close.reasons == (RiskReason.EXIT_ALWAYS_ALLOWED,)
    assert loop.positions.open_positions() == []
    assert {p.position_id: p.exit_reason for p in store.positions("paper")}["paper:again"] is OrderPurpose.SIGNAL_CLOSE

    bad = loop.on_intent(_intent(last, "nan", entry=float("nan")))
    wrong = loop.on_intent(_intent(last, "wrong", stop_loss=last.close * 1.01))
    assert RiskReason.INVALID_ENTRY in bad.reasons and RiskReason.STOP_WRONG_SIDE in wrong.reasons
    rows = db.execute("SELECT intent_id, entry FROM trade_intents WHERE intent_id IN ('nan', 'wrong')").fetchall()
    assert len(rows) == 2 and any(math.isnan(entry) for _, entry in rows)
    assert db.execute("SELECT count(*) FROM orders WHERE position_id IN ('paper:nan', 'paper:wrong')").fetchone()[0] == 0
    # Every fill belongs to an order that passed a risk check.
    assert all(approved for _, _, approved in store.fills_with_checks("paper"))


def test_entry_fills_against_a_fresh_published_book_and_ignores_a_stale_one(
    loop: TradingLoop, redis_client, db: psycopg.Connection
) -> None:
    from triplegain_core.hot_state import BookSnapshot

    publisher, last = _warm(loop, redis_client)
    price = last.close
    asks = ((price * 1.0001, 100.0), (price * 1.0003, 10_000.0))
    book = BookSnapshot("XRP/USDT", last.close_time_us + 100_000, 10, ((price * 0.9999, 500.0),), asks)
    publisher.publish([], [], [], {"ts_us": 0}, books=[book])
    assert loop.on_intent(_intent(last, "booked")).approved
    fill_qty, fill_price = db.execute("SELECT quantity, price FROM fills WHERE order_id = 'paper:booked:entry'").fetchone()
    expected = (100.0 * asks[0][0] + (fill_qty - 100.0) * asks[1][0]) / fill_qty
    assert fill_qty > 100.0 and fill_price == pytest.approx(expected)
    loop.on_intent(_intent(last, "booked", action=IntentAction.CLOSE, stop_loss=None, take_profit=None))

    stale = BookSnapshot("XRP/USDT", last.close_time_us - 60_000_000, 10, ((price * 0.9, 500.0),), asks)
    publisher.publish([], [], [], {"ts_us": 0}, books=[stale])
    assert loop.on_intent(_intent(last, "unbooked")).approved
    [(unbooked_price,)] = db.execute("SELECT price FROM fills WHERE order_id = 'paper:unbooked:entry'").fetchall()
    assert unbooked_price == pytest.approx(price * 1.0005)  # fixed slippage, not the stale book


def test_a_replayed_intent_enters_once(loop: TradingLoop, redis_client, db: psycopg.Connection) -> None:
    publisher, last = _warm(loop, redis_client)
    intent = _intent(last, "once")
    assert loop.on_intent(intent).approved
    again = loop.on_intent(intent)
    assert not again.approved and again.reasons == (RiskReason.POSITION_ALREADY_OPEN,)
    loop.on_intent(_intent(last, "once-close", action=IntentAction.CLOSE, stop_loss=None, take_profit=None))
    loop.on_intent(intent)  # approved again by risk, but the client order id is already used
    assert db.execute("SELECT count(*) FROM orders WHERE order_id = 'paper:once:entry'").fetchone()[0] == 1
    assert loop.positions.open_positions() == []
