"""Deliberated decisions through the real trading loop on real Redis and PostgreSQL: each model's
own account, the risk rules over any model output, expiry, lifecycles, strong signals."""

from __future__ import annotations

import pandas as pd
import psycopg
import pytest
import redis

from streamer.executor import TradingLoop
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.decision_intake import DecisionIntake
from triplegain_core.decision_stream import DecisionStream, PublishedDecision, StrongSignalStream
from triplegain_core.hot_state import HotStatePublisher, HotStateReader
from triplegain_core.llm.deliberation_config import RoundConfig
from triplegain_core.llm.lifecycle import DecisionState
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.market import US_PER_MINUTE, Candle, us_to_datetime
from triplegain_core.positions import PositionStatus
from triplegain_core.storage.decision_events import DecisionEventStore
from triplegain_core.storage.trading_store import TradingStore

T0 = 1_780_000_000 * 1_000_000 // US_PER_MINUTE * US_PER_MINUTE
PRICE = 0.5


def _candles(minutes: int, start: int = 0, price: float = PRICE) -> list[Candle]:
    return [Candle("XRP/USDT", "1m", T0 + m * US_PER_MINUTE, price, price * 1.001, price * 0.999, price, 100.0, 5)
            for m in range(start, start + minutes)]


def _decision(decision_id: str, account: str, action: Action = Action.LONG, *, minute: int = 10,
              size_pct: float = 10.0, leverage: float = 1.0, ttl_s: float = 900) -> PublishedDecision:
    levels = (PRICE, PRICE * 0.99, PRICE * 1.02) if action is Action.LONG else (None, None, None)
    decision = TradingDecision(action=action, symbol="XRP/USDT", confidence=0.8, position_size_pct=size_pct,
                               leverage=leverage, entry=levels[0], stop_loss=levels[1], take_profit=levels[2],
                               invalidation="x", reasoning="y", model=account.removeprefix("llm:"))
    return PublishedDecision.make(decision_id, account, account.removeprefix("llm:"), decision,
                                  T0 + minute * US_PER_MINUTE, ttl_s)


@pytest.fixture
def world(db: psycopg.Connection, redis_client: redis.Redis) -> tuple[TradingLoop, DecisionStream, DecisionEventStore]:
    settings = Settings(symbols=("XRP/USDT",), strategies=StrategySettings(enabled=(), technical_agent=False))
    events = DecisionEventStore(db)
    stream = DecisionStream(redis_client)
    intake = DecisionIntake(stream, events, start_id="0")
    loop = TradingLoop(settings, HotStateReader(redis_client), TradingStore(db), start_stream_id="0",
                       decisions=intake, strong_signals=StrongSignalStream(redis_client))
    HotStatePublisher(redis_client).publish([], [], _candles(11), {"ts_us": 0})
    return loop, stream, events


def _approved(events: DecisionEventStore, *ids: str) -> None:
    for decision_id in ids:
        events.start(decision_id, us_to_datetime(T0), "m", [(DecisionState.PENDING, "p"), (DecisionState.APPROVED, "a")])


def test_each_decision_trades_its_own_account_within_the_risk_rules(
    world: tuple[TradingLoop, DecisionStream, DecisionEventStore], db: psycopg.Connection,
    redis_client: redis.Redis,
) -> None:
    loop, stream, events = world
    _approved(events, "d-claude", "d-gpt", "d-base")
    # A model asking for the 20% maximum at 3x: untested, so the RiskAgent grants no leverage.
    stream.publish(_decision("d-claude", "llm:claude", size_pct=20.0, leverage=3.0))
    stream.publish(_decision("d-gpt", "llm:gpt"))
    stream.publish(_decision("d-base", "paper"))  # a model cannot trade the rules' account
    loop.cycle()

    names = [a.name for a in loop.accounts]
    assert names == ["paper", "llm:claude", "llm:gpt"]
    store = TradingStore(db)
    (claude,) = store.positions("llm:claude")
    assert claude.position_id == "llm:claude:d-claude" and claude.leverage == 1.0
    assert claude.entry_notional_usdt <= 0.2 * claude.equity_at_entry_usdt * (1 + 1e-9)
    assert len(store.positions("llm:gpt")) == 1
    assert store.positions("paper") == []
    assert events.state("d-claude") is DecisionState.OPEN
    assert events.state("d-base") is DecisionState.FAILED  # refused before any account saw it
    assert "not an LLM account" in events.history("d-base")[-1].reason

    # The market falls through claude's stop: the position closes, and so does its decision.
    HotStatePublisher(redis_client).publish([], [], _candles(1, start=11, price=PRICE * 0.98), {"ts_us": 0})
    loop.cycle()
    (closed,) = store.positions("llm:claude")
    assert closed.status is PositionStatus.CLOSED and closed.realized_pnl < 0
    assert events.state("d-claude") is DecisionState.CLOSED


def test_an_expired_or_weak_decision_never_reaches_an_account(
    world: tuple[TradingLoop, DecisionStream, DecisionEventStore], db: psycopg.Connection,
) -> None:
    loop, stream, events = world
    _approved(events, "old", "hold")
    stream.publish(_decision("old", "llm:claude", minute=0, ttl_s=60))  # deliberated 11 minutes ago
    stream.publish(_decision("hold", "llm:gpt", Action.HOLD))
    loop.cycle()
    assert [a.name for a in loop.accounts] == ["paper"]
    assert db.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
    assert events.state("old") is DecisionState.FAILED and events.state("hold") is DecisionState.FAILED


def test_a_close_decision_closes_the_models_position(
    world: tuple[TradingLoop, DecisionStream, DecisionEventStore], db: psycopg.Connection,
) -> None:
    loop, stream, events = world
    _approved(events, "open", "shut")
    stream.publish(_decision("open", "llm:claude"))
    loop.cycle()
    stream.publish(_decision("shut", "llm:claude", Action.CLOSE))
    loop.cycle()
    (position,) = TradingStore(db).positions("llm:claude")
    assert position.status is PositionStatus.CLOSED
    assert events.state("shut") is DecisionState.CLOSED and events.state("open") is DecisionState.CLOSED


def test_strong_signals_are_announced_and_weak_ones_are_not(
    db: psycopg.Connection, redis_client: redis.Redis, shared_data,
) -> None:
    frame = pd.read_parquet(shared_data / "binance_xrp-usdt-perp_5m.parquet")
    candles = [Candle("XRP/USDT", "1m", T0 + i * US_PER_MINUTE, r.open, r.high, r.low, r.close, r.volume, 1)
               for i, r in enumerate(frame.itertuples())]
    threshold = 0.6
    settings = Settings(symbols=("XRP/USDT",), strategies=StrategySettings(enabled=()),
                        deliberation=RoundConfig(strong_signal_strength=threshold))
    stream = StrongSignalStream(redis_client)
    loop = TradingLoop(settings, HotStateReader(redis_client), TradingStore(db), start_stream_id="0",
                       strong_signals=stream)
    publisher = HotStatePublisher(redis_client)
    for start in range(0, len(candles), 250):
        publisher.publish([], [], candles[start:start + 250], {"ts_us": 0})
    while loop.cycle():
        pass
    stored = db.execute("SELECT signal_id, strength FROM technical_signals ORDER BY time").fetchall()
    strong = [signal_id for signal_id, strength in stored if strength >= threshold]
    _, announced = stream.after("0", count=10_000)
    assert 0 < len(strong) < len(stored)  # the real market gives both kinds
    assert [s.signal_id for s in announced] == strong
    assert all(s.strength >= threshold and s.symbol == "XRP/USDT" for s in announced)
