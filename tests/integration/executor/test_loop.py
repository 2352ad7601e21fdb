"""The trading loop on real Redis and PostgreSQL, fed real candles through the hot-state contract."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import psycopg
import pytest
from pydantic import BaseModel

from streamer.executor.loop import WARM_START_CANDLES, TradingLoop
from tests.support.candle_feed import feed_and_drain
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.contracts.hot_state import HotStatePublisher, HotStateReader
from triplegain_core.execution.account import StrategyAccount
from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.marketdata.timeframes import CandleResampler
from triplegain_core.model.market import TIMEFRAMES, US_PER_MINUTE, Candle, Side, Trade, datetime_to_us, us_to_datetime
from triplegain_core.model.orders import Fill, OrderPurpose, OrderState
from triplegain_core.model.quotes import BookSnapshot, LastPrice
from triplegain_core.model.signals import Direction, IntentAction, Signal, SignalAction, TradeIntent
from triplegain_core.portfolio.balances import Portfolio
from triplegain_core.portfolio.positions import PositionStatus
from triplegain_core.risk.rules import RiskAdjustment, RiskReason
from triplegain_core.storage.trading_store import TradingStore
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.registry import LoadedStrategy


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
    feed_and_drain(loop, redis_client, candles)

    assert loop.stats.candles == len(candles)
    store = TradingStore(db)
    counts = store.activity_counts("paper")
    technical = db.execute("SELECT count(*) FROM technical_signals WHERE strategy = 'technical_trend'").fetchone()[0]
    assert technical == loop.stats.accounts["paper"].signals > 0
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
    events = db.execute("SELECT event, count(*) FROM position_events JOIN positions USING (position_id)"
                        " WHERE account = 'paper' GROUP BY event").fetchall()
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
    values = {"intent_id": intent_id, "strategy": "walk", "tested": True, "symbol": "XRP/USDT",
                  "time": us_to_datetime(last.close_time_us), "action": action, "entry": price,
                  "stop_loss": price * 0.99, "take_profit": price * 1.05}
    values.update(fields)
    return TradeIntent(**values)


def _tick(publisher: HotStatePublisher, price: float, ts_us: int) -> None:
    publisher.publish([LastPrice("XRP/USDT", price, ts_us)], [], [], {"ts_us": 0})


def test_leveraged_intent_and_its_invalidation_exit_are_stored(
    loop: TradingLoop, redis_client, db: psycopg.Connection
) -> None:
    publisher, last = _warm(loop, redis_client)
    price = last.close
    check = loop.kernel.on_intent(_intent(last, "lev", leverage=1e6, invalidation=price * 0.995))
    assert check.approved and check.leverage == 3.0  # huge leverage capped, recorded
    assert RiskAdjustment.LEVERAGE_CAPPED in check.adjustments
    assert RiskAdjustment.SIZE_REDUCED_BTC_CORRELATION in check.adjustments  # BTC correlation unknown
    store = TradingStore(db)
    [stored_check] = [c for c in store.risk_checks("paper") if c.check_id == check.check_id]
    assert stored_check == check
    [position] = [p for p in store.positions("paper") if p.status is PositionStatus.OPEN]
    assert position.leverage == 3.0 and position.loan > 0 and position.invalidation == pytest.approx(price * 0.995)
    assert loop.kernel.portfolio.liabilities[position.loan_asset] == pytest.approx(position.loan)
    entry_order = f"{position.position_id}:entry"
    assert store.order_states("paper")[entry_order] is OrderState.FILLED
    assert [e.state for e in store.order_events(entry_order)] == [OrderState.NEW, OrderState.FILLED]

    _tick(publisher, price * 0.994, last.close_time_us + 1_000_000)  # below invalidation, above the stop
    assert loop.cycle() == 0
    [closed] = [p for p in store.positions("paper") if p.position_id == position.position_id]
    assert closed.status is PositionStatus.CLOSED and closed.exit_reason is OrderPurpose.INVALIDATION
    assert closed.loan == 0.0 and closed.realized_pnl_usdt is not None
    assert not any(loop.kernel.portfolio.liabilities.values())
    fills = db.execute("SELECT loan_change FROM fills WHERE order_id LIKE %s ORDER BY time",
                       (f"{position.position_id}:%",)).fetchall()
    assert [math.copysign(1, f[0]) for f in fills] == [1.0, -1.0]


def test_trailing_stop_moves_on_ticks_and_closes_in_profit(
    loop: TradingLoop, redis_client, db: psycopg.Connection
) -> None:
    publisher, last = _warm(loop, redis_client)
    price = last.close
    assert loop.kernel.on_intent(_intent(last, "trail")).approved
    position = loop.kernel.positions.open_positions()[0]
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
    assert loop.kernel.on_intent(_intent(last, "short-lived", max_holding_s=60.0)).approved
    first = loop.kernel.positions.open_positions()[0]
    _tick(publisher, last.close, last.close_time_us + 61_000_000)
    loop.cycle()
    assert loop.kernel.positions.open_positions() == []
    store = TradingStore(db)
    exit_reasons = {p.position_id: p.exit_reason for p in store.positions("paper")}
    assert exit_reasons[first.position_id] is OrderPurpose.MAX_HOLDING

    assert loop.kernel.on_intent(_intent(last, "again")).approved
    close = loop.kernel.on_intent(_intent(last, "close", action=IntentAction.CLOSE, stop_loss=None, take_profit=None))
    assert close.approved and close.reasons == (RiskReason.EXIT_ALWAYS_ALLOWED,)
    assert loop.kernel.positions.open_positions() == []
    assert {p.position_id: p.exit_reason for p in store.positions("paper")}["paper:again"] is OrderPurpose.SIGNAL_CLOSE

    bad = loop.kernel.on_intent(_intent(last, "nan", entry=float("nan")))
    wrong = loop.kernel.on_intent(_intent(last, "wrong", stop_loss=last.close * 1.01))
    assert RiskReason.INVALID_ENTRY in bad.reasons and RiskReason.STOP_WRONG_SIDE in wrong.reasons
    rows = db.execute("SELECT intent_id, entry FROM trade_intents WHERE intent_id IN ('nan', 'wrong')").fetchall()
    assert len(rows) == 2 and any(math.isnan(entry) for _, entry in rows)
    orders = db.execute("SELECT count(*) FROM orders WHERE position_id IN ('paper:nan', 'paper:wrong')").fetchone()
    assert orders[0] == 0
    # Every fill belongs to an order that passed a risk check.
    assert all(approved for _, _, approved in store.fills_with_checks("paper"))


def test_entry_fills_against_a_fresh_published_book_and_ignores_a_stale_one(
    loop: TradingLoop, redis_client, db: psycopg.Connection
) -> None:
    from triplegain_core.model.quotes import BookSnapshot

    publisher, last = _warm(loop, redis_client)
    price = last.close
    asks = ((price * 1.0001, 100.0), (price * 1.0003, 10_000.0))
    book = BookSnapshot("XRP/USDT", last.close_time_us + 100_000, 10, ((price * 0.9999, 500.0),), asks)
    publisher.publish([], [], [], {"ts_us": 0}, books=[book])
    assert loop.kernel.on_intent(_intent(last, "booked")).approved
    fill_qty, fill_price = db.execute(
        "SELECT quantity, price FROM fills WHERE order_id = 'paper:booked:entry'").fetchone()
    expected = (100.0 * asks[0][0] + (fill_qty - 100.0) * asks[1][0]) / fill_qty
    assert fill_qty > 100.0 and fill_price == pytest.approx(expected)
    loop.kernel.on_intent(_intent(last, "booked", action=IntentAction.CLOSE, stop_loss=None, take_profit=None))

    stale = BookSnapshot("XRP/USDT", last.close_time_us - 60_000_000, 10, ((price * 0.9, 500.0),), asks)
    publisher.publish([], [], [], {"ts_us": 0}, books=[stale])
    assert loop.kernel.on_intent(_intent(last, "unbooked")).approved
    [(unbooked_price,)] = db.execute("SELECT price FROM fills WHERE order_id = 'paper:unbooked:entry'").fetchall()
    assert unbooked_price == pytest.approx(price * 1.0005)  # fixed slippage, not the stale book


def test_a_replayed_intent_enters_once(loop: TradingLoop, redis_client, db: psycopg.Connection) -> None:
    _publisher, last = _warm(loop, redis_client)
    intent = _intent(last, "once")
    assert loop.kernel.on_intent(intent).approved
    again = loop.kernel.on_intent(intent)
    assert not again.approved and again.reasons == (RiskReason.POSITION_ALREADY_OPEN,)
    loop.kernel.on_intent(_intent(last, "once-close", action=IntentAction.CLOSE, stop_loss=None, take_profit=None))
    loop.kernel.on_intent(intent)  # approved again by risk, but the client order id is already used
    assert db.execute("SELECT count(*) FROM orders WHERE order_id = 'paper:once:entry'").fetchone()[0] == 1
    assert loop.kernel.positions.open_positions() == []


# --- every enabled strategy on its own isolated paper account


def _stored_fills(db: psycopg.Connection, account: str) -> list[Fill]:
    rows = db.execute(
        "SELECT fill_id, order_id, account, time, symbol, side, quantity, price, fee, fee_asset, loan_change,"
        " loan_asset FROM fills WHERE account = %s ORDER BY time, fill_id", (account,)).fetchall()
    names = ("fill_id", "order_id", "account", "time", "symbol", "side", "quantity", "price", "fee", "fee_asset",
             "loan_change", "loan_asset")
    return [Fill(**dict(zip(names, row, strict=True))) for row in rows]


def test_every_strategy_trades_its_own_isolated_account(
    loop: TradingLoop, redis_client, db: psycopg.Connection, shared_data
) -> None:
    candles = _real_candles(shared_data)
    feed_and_drain(loop, redis_client, candles)
    loop.kernel.record_snapshot()

    names = {s.name for s in loop.kernel.strategies}
    # Every built-in that trades XRP/USDT runs; ratio trading (XRP/BTC only) is reported, not run.
    assert len(names) >= 9 and "ratio_trading" not in names
    assert any(r.name == "ratio_trading" and not r.loaded for r in loop.kernel.strategy_reports)
    assert [a.name for a in loop.kernel.accounts] == ["paper", *(f"paper:{s.name}" for s in loop.kernel.strategies)]
    store = TradingStore(db)
    traded = [a for a in loop.kernel.accounts[1:] if a.stats.fills]
    assert len(traded) >= 3, "the real candles must make several strategies trade"
    for account in loop.kernel.accounts:
        positions = store.positions(account.name)
        assert all(p.strategy == (account.strategy or "technical_trend") for p in positions)
        assert db.execute("SELECT count(*) FROM fills WHERE account = %s", (account.name,)).fetchone()[0] \
            == account.stats.fills
        assert all(approved for _, _, approved in store.fills_with_checks(account.name))
        # Isolation: the account's own stored fills, replayed on the starting balances, give
        # exactly its holdings; no other account's trade moved them.
        replayed = Portfolio(account.name, Settings().starting_balances)
        for fill in _stored_fills(db, account.name):
            replayed.apply_fill(fill)
        assert replayed.balances == pytest.approx(account.portfolio.balances, rel=1e-12, abs=1e-12)
        metrics = store.account_metrics(account.name)
        closed = [p for p in positions if p.status is PositionStatus.CLOSED]
        assert metrics.trades == len(closed)
        assert metrics.realized_pnl_usdt == pytest.approx(sum(p.realized_pnl for p in closed), abs=1e-9)
        assert metrics.end_equity_usdt == pytest.approx(account.portfolio.equity_usdt({"XRP/USDT": candles[-1].close}))
    # Each account has its own equity curve.
    assert set(store.accounts()) == {a.name for a in loop.kernel.accounts}


def test_configuration_chooses_the_strategies(redis_client, db: psycopg.Connection) -> None:
    settings = Settings(symbols=("XRP/USDT",),
                        strategies=StrategySettings(enabled=("wavetrend", "no_such_strategy"), technical_agent=False,
                                                    tested=("wavetrend",)))
    loop = TradingLoop(settings, HotStateReader(redis_client), TradingStore(db), start_stream_id="0")
    assert [s.name for s in loop.kernel.strategies] == ["wavetrend"]
    assert [(a.name, a.tested) for a in loop.kernel.accounts] == [("paper", False), ("paper:wavetrend", True)]
    reports = {r.name: r for r in loop.kernel.strategy_reports if not r.loaded}
    assert reports["no_such_strategy"].reason == "enabled by configuration but not loaded"
    assert reports["trend_momentum"].reason == "not enabled by configuration"
    _warm(loop, redis_client)
    assert loop.stats.accounts["paper"].signals == 0  # no TechnicalAgent: the base account only takes intents


PLUGINS = {
    "exploding_import": "raise RuntimeError('plugin exploded at import')\n",
    "raising": (
        "from pydantic import BaseModel\n"
        "NAME = 'raising'\nVERSION = '1'\nSYMBOLS = ('XRP/USDT',)\nREADS = frozenset({'candles'})\n"
        "class Config(BaseModel):\n    timeframe: str = '1m'\n"
        "def generate_signal(snapshot, config, state):\n    raise ZeroDivisionError('strategy bug')\n"
    ),
}


def test_broken_strategies_are_reported_and_the_others_trade_on(
    redis_client, db: psycopg.Connection, shared_data, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    from triplegain_core.strategies.registry import BUILTIN_PACKAGE
    from triplegain_core.strategies.selection import select_strategies

    package = f"tg_loop_plugins_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    for module, source in PLUGINS.items():
        (tmp_path / package / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = Settings(symbols=("XRP/USDT",), strategies=StrategySettings(enabled=("raising", "momentum_scalp")))
    catalog = select_strategies(settings.strategies, settings.symbols, packages=(BUILTIN_PACKAGE, package),
                                entry_point_group=None)
    assert any("plugin exploded at import" in r.reason for r in catalog.failures)
    loop = TradingLoop(settings, HotStateReader(redis_client), TradingStore(db), strategies=catalog.strategies,
                       start_stream_id="0")
    HotStatePublisher(redis_client).publish([], [], _real_candles(shared_data)[:400], {"ts_us": 0})
    while loop.cycle():  # the raising strategy fails on every candle; the loop goes on
        pass
    assert loop.stats.candles == 400
    assert loop.kernel.account("paper:raising").stats.signals == 0
    assert loop.kernel.strategy_failures["raising"] == 400  # called on every candle, failed every time
    assert loop.kernel.account("paper:momentum_scalp").stats.signals > 0
    assert loop.stats.accounts["paper"].signals > 0


# --- warm start: a loop started at the stream's end fills its history from the hot state


US_PER_HOUR = 60 * US_PER_MINUTE


def _hour_aligned(candles: list[Candle]) -> list[Candle]:
    """The candles moved to start on an hour, so 5m and 1h buckets begin with the first one."""
    shift = candles[0].open_time_us % US_PER_HOUR
    return [dataclasses.replace(c, open_time_us=c.open_time_us - shift) for c in candles]


def _signals_by_account(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Every signal any account is handed, by account name (the record the comparison reads)."""
    seen: dict[str, list] = {}
    handed: Callable = StrategyAccount.on_signal

    def record(account: StrategyAccount, signal):
        seen.setdefault(account.name, []).append(signal)
        return handed(account, signal)

    monkeypatch.setattr(StrategyAccount, "on_signal", record)
    return seen


def _on(seen: dict[str, list], prefix: str, close_time_us: int) -> dict[str, list]:
    """The signals of the accounts named ``prefix``... on the candle closing at ``close_time_us``,
    by account name without the prefix."""
    when = us_to_datetime(close_time_us)
    on = {name.removeprefix(prefix): [s for s in signals if s.time == when]
          for name, signals in seen.items() if name.startswith(prefix)}
    return {name: signals for name, signals in on.items() if signals}


def test_a_restarted_loop_starts_warm_and_trades_the_next_candle_as_a_whole_stream_loop(
    redis_client, db: psycopg.Connection, shared_data, monkeypatch: pytest.MonkeyPatch
) -> None:
    candles = _hour_aligned(_real_candles(shared_data))
    history = 999  # within the 1000 recent candles the hot state keeps: both loops hold the same history
    seen = _signals_by_account(monkeypatch)
    publisher = HotStatePublisher(redis_client)
    for start in range(0, history, 250):
        publisher.publish([], [], candles[start:min(start + 250, history)], {"ts_us": 0})
    whole = TradingLoop(Settings(symbols=("XRP/USDT",), account="whole"), HotStateReader(redis_client),
                        TradingStore(db), start_stream_id="0")
    while whole.cycle():
        pass
    assert whole.stats.candles == history

    restarted = TradingLoop(Settings(symbols=("XRP/USDT",), account="restarted"), HotStateReader(redis_client),
                            TradingStore(db))
    assert restarted.cycle() == 0  # the warm-up reads the history; no candle is traded on it
    assert restarted.stats.warm_candles == history
    assert restarted.stats.candles == restarted.stats.signals == 0
    assert not any(name.startswith("restarted") for name in seen)
    assert TradingStore(db).activity_counts("restarted")["orders"] == 0
    # Every series the strategies read is the whole-stream loop's, 5m and 1h included.
    now_us = candles[history - 1].close_time_us
    warm, full = restarted.kernel.market.snapshot(now_us), whole.kernel.market.snapshot(now_us)
    assert warm.candles.keys() == full.candles.keys()
    assert {tf for _, tf in warm.candles} >= {"1m", "5m", "1h"}
    for key, window in full.candles.items():
        for column in ("open_time_us", "open", "high", "low", "close", "volume"):
            assert np.array_equal(getattr(warm.candles[key], column), getattr(window, column)), (key, column)
    assert restarted.kernel.market.history("XRP/USDT") == whole.kernel.market.history("XRP/USDT")

    # The next new candles: the first one either loop signals on is signalled alike by both.
    for candle in candles[history:]:
        publisher.publish([], [], [candle], {"ts_us": 0})
        assert whole.cycle() == restarted.cycle() == 1
        expected = _on(seen, "whole", candle.close_time_us)
        got = _on(seen, "restarted", candle.close_time_us)
        if expected or got:
            break
    assert expected
    assert got == expected
    # and it signalled nothing else: no signal on a candle of the warm-up history.
    assert restarted.stats.signals == sum(len(signals) for signals in got.values())


def test_a_restarted_loop_takes_the_higher_timeframes_the_streamer_published(
    redis_client, db: psycopg.Connection, shared_data
) -> None:
    candles = _hour_aligned(_real_candles(shared_data))
    assert len(candles) > 1.5 * WARM_START_CANDLES  # more than the hot state keeps of the 1m series
    publisher = HotStatePublisher(redis_client)
    # As the streamer publishes: each 1m candle with the higher candles it closes.
    resamplers = [CandleResampler("XRP/USDT", tf) for tf in TIMEFRAMES if tf != "1m"]
    for start in range(0, len(candles), 250):
        batch = candles[start:start + 250]
        publisher.publish([], [], [*batch, *(c for r in resamplers for m in batch for c in r.add(m))], {"ts_us": 0})
    whole = TradingLoop(Settings(symbols=("XRP/USDT",), account="whole"), HotStateReader(redis_client),
                        TradingStore(db), start_stream_id="0")
    while whole.cycle():
        pass
    restarted = TradingLoop(Settings(symbols=("XRP/USDT",), account="restarted"), HotStateReader(redis_client),
                            TradingStore(db))
    restarted.warm_start()

    now_us = candles[-1].close_time_us
    warm, full = restarted.kernel.market.snapshot(now_us), whole.kernel.market.snapshot(now_us)
    assert warm.candles.keys() == full.candles.keys()
    hourly = full.window("XRP/USDT", "1h")
    assert hourly is not None and len(hourly) * 60 > WARM_START_CANDLES  # longer than 1m candles could rebuild
    for key, window in full.candles.items():
        for column in ("open_time_us", "open", "high", "low", "close", "volume"):
            assert np.array_equal(getattr(warm.candles[key], column), getattr(window, column)), (key, column)


def test_order_flow_trades_live_on_the_published_tape_and_book(
    db: psycopg.Connection, redis_client,
) -> None:
    settings = Settings(symbols=("XRP/USDT",),
                        strategies=StrategySettings(enabled=("order_flow",), technical_agent=False))
    loop = TradingLoop(settings, HotStateReader(redis_client), TradingStore(db), start_stream_id="0")
    publisher = HotStatePublisher(redis_client)
    t0 = 1_790_000_000 * 1_000_000
    price = 0.5
    publisher.publish([], [], [Candle("XRP/USDT", "1m", t0 - US_PER_MINUTE, price, price, price, price, 100.0, 5)],
                      {"ts_us": 0})
    loop.cycle()
    # Aggressive buying on the tape, and a book leaning the same way (bids far deeper than asks).
    tape = [Trade("XRP/USDT", i, t0 + i * 1_000_000, price, 50.0 if i % 4 else 5.0,
                  Side.BUY if i % 4 else Side.SELL) for i in range(1, 25)]
    now = t0 + 25 * 1_000_000
    book = BookSnapshot("XRP/USDT", now, 10, tuple((price - 0.0001 * (i + 1), 5000.0) for i in range(10)),
                        tuple((price + 0.0001 * (i + 1), 500.0) for i in range(10)))
    publisher.publish([LastPrice("XRP/USDT", price, now)], [], [], {"ts_us": 0}, books=[book], trades=tape)
    loop.cycle()
    store = TradingStore(db)
    (position,) = store.positions("paper:order_flow")
    assert position.direction is Direction.LONG and position.strategy == "order_flow"
    assert all(approved for _, _, approved in store.fills_with_checks("paper:order_flow"))


# --- a strategy's state follows what its account really holds


class _NoConfig(BaseModel):
    pass


def _stubborn_long(stop_fraction: float) -> LoadedStrategy:
    """LONG on every new candle while it believes itself flat, with a stop ``stop_fraction`` below."""

    def generate(snapshot: MarketSnapshot, config: BaseModel, state: StrategyState) -> Signal | None:
        window = snapshot.window(state.symbol, "1m")
        if window is None or state.open_action is not None:
            return None
        close, key_us = float(window.close[-1]), int(window.open_time_us[-1])
        return Signal(signal_id=f"stubborn:{key_us}", strategy="stubborn", strategy_version="1",
                              symbol=state.symbol, timeframe="1m", time=us_to_datetime(snapshot.ts_us),
                              action=SignalAction.LONG, strength=0.9, entry=close,
                              stop_loss=close * (1 - stop_fraction), take_profit=close * 1.5, reason="always long")

    return LoadedStrategy(name="stubborn", version="1", symbols=("XRP/USDT",), config=_NoConfig(),
                          generate=generate, source="test", reads=frozenset({"candles"}))


def _stubborn_loop(db: psycopg.Connection, redis_client, stop_fraction: float) -> TradingLoop:
    settings = Settings(symbols=("XRP/USDT",), strategies=StrategySettings(technical_agent=False))
    return TradingLoop(settings, HotStateReader(redis_client), TradingStore(db),
                       strategies=[_stubborn_long(stop_fraction)], start_stream_id="0")


def test_a_strategy_whose_entry_the_risk_rules_reject_is_told_it_holds_nothing(
    redis_client, db: psycopg.Connection
) -> None:
    loop = _stubborn_loop(db, redis_client, stop_fraction=0.10)  # beyond the 2 % the rules allow
    feed_and_drain(loop, redis_client, _walk(20))
    account = loop.kernel.account("paper:stubborn")
    # Each candle it asks again, and each time the rules say no: it never believes it is long.
    assert account.stats.signals == account.stats.rejected == 20
    assert account.stats.approved == 0 and not account.positions.open_positions()
    reasons = {reason for check in TradingStore(db).risk_checks("paper:stubborn") for reason in check.reasons}
    assert RiskReason.STOP_TOO_FAR in reasons


def test_a_strategy_stopped_out_on_a_tick_is_told_so_at_once(redis_client, db: psycopg.Connection) -> None:
    loop = _stubborn_loop(db, redis_client, stop_fraction=0.01)
    candles = _walk(10)
    feed_and_drain(loop, redis_client, candles)
    (position,) = loop.kernel.account("paper:stubborn").positions.open_positions()
    assert loop.kernel.strategy_state("stubborn", "XRP/USDT").open_action is SignalAction.LONG
    _tick(HotStatePublisher(redis_client), position.stop_loss * 0.99, candles[-1].close_time_us + 1_000_000)
    loop.cycle()
    assert not loop.kernel.account("paper:stubborn").positions.open_positions()
    # Told on the tick that closed it, before any candle says anything.
    assert loop.kernel.strategy_state("stubborn", "XRP/USDT").open_action is None


def test_a_strategy_stopped_out_is_told_it_is_flat_and_enters_again(redis_client, db: psycopg.Connection) -> None:
    loop = _stubborn_loop(db, redis_client, stop_fraction=0.01)
    candles = _walk(10)
    # The eleventh candle falls through the stop of the position opened on the first.
    drop = candles[-1].close * 0.95
    candles.append(dataclasses.replace(candles[-1], open_time_us=candles[-1].open_time_us + US_PER_MINUTE,
                                       low=drop, close=drop))
    candles += [dataclasses.replace(candles[-1], open_time_us=candles[-1].open_time_us + (i + 1) * US_PER_MINUTE,
                                    open=drop, high=drop * 1.0002, low=drop * 0.9998)
                for i in range(3)]
    feed_and_drain(loop, redis_client, candles)
    first, second = TradingStore(db).positions("paper:stubborn")
    assert first.status is PositionStatus.CLOSED and first.exit_reason is OrderPurpose.STOP_LOSS
    assert second.status is PositionStatus.OPEN and second.opened_at > first.closed_at
    assert loop.kernel.account("paper:stubborn").stats.signals == 2
