"""The executor's decisions through the stream's consumer group, on real Redis and PostgreSQL:
acknowledged only once recorded, delivered again after a crash without trading twice, claimed
from a consumer that died, swept onto the stream when their publication was lost, refused when
the deliberation never stored them."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest
import redis

from streamer.executor.loop import TradingLoop
from tests.support.decisions import executor_intake, store_approved
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.contracts.decision_streams import (
    DECISIONS_STREAM,
    EXECUTOR_GROUP,
    DecisionConsumer,
    DecisionStream,
    decision_marker_key,
)
from triplegain_core.contracts.hot_state import HotStatePublisher, HotStateReader
from triplegain_core.decisions.intake import DecisionIntake
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.decisions.published import PublishedDecision
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.model.market import US_PER_MINUTE, Candle
from triplegain_core.model.orders import Fill
from triplegain_core.storage.decision_ledger import DecisionLedger
from triplegain_core.storage.trading_store import TradingStore

T0 = 1_780_000_000 * 1_000_000 // US_PER_MINUTE * US_PER_MINUTE
PRICE = 0.5
# Deliveries arrive on the feed's thread: a test cycles until they are handled, within this.
WAIT_S = 30.0


def _decision(decision_id: str, account: str = "llm:claude") -> PublishedDecision:
    decision = TradingDecision(action=Action.LONG, symbol="XRP/USDT", confidence=0.8, position_size_pct=5.0,
                               leverage=1.0, entry=PRICE, stop_loss=PRICE * 0.99, take_profit=PRICE * 1.02,
                               invalidation="x", reasoning="y", model=account.removeprefix("llm:"))
    return PublishedDecision.make(decision_id, account, account.removeprefix("llm:"), decision,
                                  T0 + 10 * US_PER_MINUTE, 900)


def _loop(client: redis.Redis, store: TradingStore, intake: DecisionIntake) -> TradingLoop:
    settings = Settings(symbols=("XRP/USDT",), strategies=StrategySettings(enabled=(), technical_agent=False))
    candles = [Candle("XRP/USDT", "1m", T0 + m * US_PER_MINUTE, PRICE, PRICE * 1.001, PRICE * 0.999, PRICE, 100.0, 5)
               for m in range(11)]
    HotStatePublisher(client).publish([], [], candles, {"ts_us": 0})
    loop = TradingLoop(settings, HotStateReader(client), store, start_stream_id="0", decisions=intake)
    loop.cycle()  # the market's time is known from here on
    return loop


def _cycle_until(loop: TradingLoop, done: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        loop.cycle()
        if done():
            return True
        time.sleep(0.02)
    return False


def _pending(client: redis.Redis) -> int:
    return int(client.xpending(DECISIONS_STREAM, EXECUTOR_GROUP)["pending"])


def _entry_fills(db: psycopg.Connection, decision_id: str) -> int:
    row = db.execute("SELECT count(*) FROM fills WHERE order_id LIKE %s", (f"%:{decision_id}:entry",)).fetchone()
    assert row is not None
    return int(row[0])


def test_a_decision_is_acknowledged_once_its_outcome_is_recorded(
    database_url: str, db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    ledger, stream = DecisionLedger(db), DecisionStream(redis_client)
    store_approved(ledger, _decision("d1"))
    # Published twice (the deliberation, then a sweep): one entry, as long as it waits.
    assert stream.publish(_decision("d1")) == stream.publish(_decision("d1"))
    assert redis_client.xlen(DECISIONS_STREAM) == 1
    with executor_intake(redis_client, database_url) as intake:
        loop = _loop(redis_client, TradingStore(db), intake)
        assert _cycle_until(loop, lambda: ledger.state("d1") is DecisionState.OPEN and _pending(redis_client) == 0)
    assert _entry_fills(db, "d1") == 1
    assert not redis_client.exists(decision_marker_key("d1"))


class _Crash(Exception):
    """The process dying right after the fill is stored."""


class _CrashAfterFill(TradingStore):
    def record_fill(self, fill: Fill) -> None:
        super().record_fill(fill)
        raise _Crash(fill.order_id)


def test_a_crash_between_the_fill_and_the_record_delivers_again_and_trades_once(
    database_url: str, db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    ledger = DecisionLedger(db)
    store_approved(ledger, _decision("d1"))
    DecisionStream(redis_client).publish(_decision("d1"))
    # A loop without checkpoints writes its trail as it goes, outside a cycle's transaction
    # (`triplegain execute` commits each cycle whole: see test_decisions_once.py).
    with executor_intake(redis_client, database_url) as intake, pytest.raises(_Crash):
        _cycle_until(_loop(redis_client, _CrashAfterFill(db), intake), lambda: False)
    # Filled and stored, but neither recorded as executed nor acknowledged.
    assert _entry_fills(db, "d1") == 1 and ledger.state("d1") is DecisionState.APPROVED
    assert _pending(redis_client) == 1
    # The restarted executor (same account set, same consumer) gets it again: it writes the
    # outcome from the order, and does not trade it.
    with executor_intake(redis_client, database_url) as intake:
        restarted = _loop(redis_client, TradingStore(db), intake)
        assert _cycle_until(restarted, lambda: _pending(redis_client) == 0)
        assert intake.stats.recovered == 1
    assert _entry_fills(db, "d1") == 1
    assert [t.target for t in ledger.history("d1")][-2:] == [DecisionState.EXECUTED, DecisionState.OPEN]
    assert "llm:claude" not in [a.name for a in restarted.kernel.accounts]


def test_entries_a_dead_consumer_left_pending_are_claimed_and_traded(
    database_url: str, db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    ledger = DecisionLedger(db)
    store_approved(ledger, _decision("d1"))
    DecisionStream(redis_client).publish(_decision("d1"))
    ghost = DecisionConsumer(redis_client, "another-account-set")
    ghost.join()
    assert [d.decision.decision_id for d in ghost.read(block_ms=100)] == ["d1"]  # and then it died
    with executor_intake(redis_client, database_url, claim_idle_ms=200, claim_every_s=0.1) as intake:
        loop = _loop(redis_client, TradingStore(db), intake)
        assert _cycle_until(loop, lambda: ledger.state("d1") is DecisionState.OPEN and _pending(redis_client) == 0)
    assert _entry_fills(db, "d1") == 1


def test_an_approved_decision_never_published_is_swept_onto_the_stream_and_traded(
    database_url: str, db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    ledger = DecisionLedger(db)
    store_approved(ledger, _decision("lost"))  # approved, then the publisher died: not on the stream
    assert redis_client.xlen(DECISIONS_STREAM) == 0
    with executor_intake(redis_client, database_url) as intake:
        loop = _loop(redis_client, TradingStore(db), intake)
        assert _cycle_until(loop, lambda: ledger.state("lost") is DecisionState.OPEN)
    assert _entry_fills(db, "lost") == 1 and redis_client.xlen(DECISIONS_STREAM) == 1


def test_an_entry_nobody_stored_is_refused_acknowledged_and_never_traded(
    database_url: str, db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    # Anyone who can write to Redis, trying to open an llm:* account.
    redis_client.xadd(DECISIONS_STREAM, {"d": _decision("forged", "llm:evil").model_dump_json()})
    with executor_intake(redis_client, database_url) as intake:
        loop = _loop(redis_client, TradingStore(db), intake)
        assert _cycle_until(loop, lambda: intake.stats.received == 1 and _pending(redis_client) == 0)
        assert intake.stats.untrusted == 1
    assert [a.name for a in loop.kernel.accounts] == ["paper"]
    assert db.execute("SELECT count(*) FROM orders").fetchone() == (0,)
    assert DecisionLedger(db).state("forged") is None
