"""Deliberated decisions through the real trading loop on real Redis and PostgreSQL: each model's
own account, the risk rules over any model output, expiry, lifecycles, strong signals."""

from __future__ import annotations

import json
import time

import pandas as pd
import psycopg
import pytest
import redis

from streamer.executor.loop import TradingLoop
from tests.support.candle_feed import feed_and_drain
from tests.support.decisions import store_approved
from tests.support.llm_standins import TEST_KEYS, LLMStandIn, Reply, standin_settings
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.contracts.decision_streams import DecisionStream, StrongSignalStream
from triplegain_core.contracts.hot_state import HotStatePublisher, HotStateReader
from triplegain_core.decisions.gate_queue import GateQueue
from triplegain_core.decisions.intake import DecisionIntake
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.decisions.published import PublishedDecision
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.deliberation_config import RoundConfig
from triplegain_core.llm.gate import LLMSignalGate
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.model.market import US_PER_MINUTE, Candle, Side, Trade
from triplegain_core.model.quotes import BookSnapshot, LastPrice
from triplegain_core.portfolio.positions import PositionStatus
from triplegain_core.storage.decision_ledger import DecisionLedger
from triplegain_core.storage.gate_store import GateStore
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
def world(db: psycopg.Connection, redis_client: redis.Redis) -> tuple[TradingLoop, DecisionStream, DecisionLedger]:
    settings = Settings(symbols=("XRP/USDT",), strategies=StrategySettings(enabled=(), technical_agent=False))
    events = DecisionLedger(db)
    stream = DecisionStream(redis_client)
    intake = DecisionIntake(stream, events, start_id="0")
    loop = TradingLoop(settings, HotStateReader(redis_client), TradingStore(db), start_stream_id="0",
                       decisions=intake, strong_signals=StrongSignalStream(redis_client))
    HotStatePublisher(redis_client).publish([], [], _candles(11), {"ts_us": 0})
    loop.cycle()  # the market's time is known from here on: decisions can be judged
    return loop, stream, events


def _publish_approved(events: DecisionLedger, stream: DecisionStream, *decisions: PublishedDecision) -> None:
    store_approved(events, *decisions)
    for decision in decisions:
        stream.publish(decision)


def test_each_decision_trades_its_own_account_within_the_risk_rules(
    world: tuple[TradingLoop, DecisionStream, DecisionLedger], db: psycopg.Connection,
    redis_client: redis.Redis,
) -> None:
    loop, stream, events = world
    # A model asking for the 20% maximum at 3x: untested, so the RiskAgent grants no leverage.
    _publish_approved(events, stream, _decision("d-claude", "llm:claude", size_pct=20.0, leverage=3.0),
                      _decision("d-gpt", "llm:gpt"),
                      _decision("d-base", "paper"))  # a model cannot trade the rules' account
    loop.cycle()

    names = [a.name for a in loop.kernel.accounts]
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
    world: tuple[TradingLoop, DecisionStream, DecisionLedger], db: psycopg.Connection,
) -> None:
    loop, stream, events = world
    _publish_approved(events, stream, _decision("old", "llm:claude", minute=0, ttl_s=60),  # 11 minutes ago
                      _decision("hold", "llm:gpt", Action.HOLD))
    loop.cycle()
    assert [a.name for a in loop.kernel.accounts] == ["paper"]
    assert db.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
    assert events.state("old") is DecisionState.FAILED and events.state("hold") is DecisionState.FAILED


def test_a_close_decision_closes_the_models_position(
    world: tuple[TradingLoop, DecisionStream, DecisionLedger], db: psycopg.Connection,
) -> None:
    loop, stream, events = world
    _publish_approved(events, stream, _decision("open", "llm:claude"))
    loop.cycle()
    _publish_approved(events, stream, _decision("shut", "llm:claude", Action.CLOSE))
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
    feed_and_drain(loop, redis_client, candles)
    stored = db.execute("SELECT signal_id, strength FROM technical_signals ORDER BY time").fetchall()
    strong = [signal_id for signal_id, strength in stored if strength >= threshold]
    _, announced = stream.after("0", count=10_000)
    assert 0 < len(strong) < len(stored)  # the real market gives both kinds
    assert [s.signal_id for s in announced] == strong
    assert all(s.strength >= threshold and s.symbol == "XRP/USDT" for s in announced)


def _tape_and_book(publisher: HotStatePublisher, t0: int) -> None:
    """A minute's candle, then a tape of aggressive buying and a book leaning the same way."""
    publisher.publish([], [], [Candle("XRP/USDT", "1m", t0 - US_PER_MINUTE, PRICE, PRICE, PRICE, PRICE, 100.0, 5)],
                      {"ts_us": 0})
    tape = [Trade("XRP/USDT", i, t0 + i * 1_000_000, PRICE, 50.0 if i % 4 else 5.0,
                  Side.BUY if i % 4 else Side.SELL) for i in range(1, 25)]
    now = t0 + 25 * 1_000_000
    book = BookSnapshot("XRP/USDT", now, 10, tuple((PRICE - 0.0001 * (i + 1), 5000.0) for i in range(10)),
                        tuple((PRICE + 0.0001 * (i + 1), 500.0) for i in range(10)))
    publisher.publish([LastPrice("XRP/USDT", PRICE, now)], [], [], {"ts_us": 0}, books=[book], trades=tape)


@pytest.mark.parametrize(("answer", "trades"), [("LONG", True), ("HOLD", False)])
def test_a_gated_strategy_trades_only_what_the_llm_gate_confirms(
    answer: str, trades: bool, db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    levels = {"entry": PRICE, "stop_loss": PRICE * 0.99, "take_profit": PRICE * 1.02} if answer == "LONG" \
        else {"entry": None, "stop_loss": None, "take_profit": None}
    with LLMStandIn() as standin:
        standin.script("claude", default=Reply(text=json.dumps({
            "action": answer, "symbol": "XRP/USDT", "confidence": 0.9, "position_size_pct": 20, "leverage": 3,
            **levels, "invalidation": "x", "reasoning": "the tape agrees" if trades else "too thin"})))
        settings = Settings(symbols=("XRP/USDT",), llm=standin_settings(standin.url),
                            strategies=StrategySettings(enabled=("order_flow",), gated=("order_flow",),
                                                        technical_agent=False))
        gate = LLMSignalGate(lambda: LLMClient(settings.llm, environ=TEST_KEYS), settings.gate_model())
        with GateQueue(gate) as queue:
            loop = TradingLoop(settings, HotStateReader(redis_client), TradingStore(db), start_stream_id="0",
                               gate=queue, gate_store=GateStore(db))
            loop.cycle()
            _tape_and_book(HotStatePublisher(redis_client), T0 + 60 * US_PER_MINUTE)
            loop.cycle()
            # The signal waits for the gate; the loop goes on cycling meanwhile.
            assert TradingStore(db).positions("paper:order_flow") == []
            for _ in range(500):
                loop.cycle()
                if GateStore(db).decisions():
                    break
                time.sleep(0.01)
    (decision,) = GateStore(db).decisions("order_flow")
    assert decision.passed is trades and decision.gate_verdict.value == ("confirm" if trades else "veto")
    positions = TradingStore(db).positions("paper:order_flow")
    assert len(positions) == (1 if trades else 0)
    if trades:  # the baseline's own signal, whatever size and leverage the model proposed
        assert positions[0].leverage == 1.0 and positions[0].entry_notional_usdt <= 0.2 * 1250
