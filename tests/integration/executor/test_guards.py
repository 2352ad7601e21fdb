"""The market guards through the real trading loop on real Redis and PostgreSQL, on a clock the
test advances: a streamer that stops, an exchange that goes silent, decisions held and expired,
the failure breaker, and every set and lift in ``guard_events``."""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import psycopg
import pytest
import redis

from streamer.executor.feed import HotStateFeed
from tests.support.stale_market import (
    START_US,
    Phase,
    StepClock,
    approve,
    decision,
    publish,
    run_stale_market,
    stale_market_loop,
)
from triplegain_core.contracts.decision_streams import DecisionStream
from triplegain_core.contracts.hot_state import HEARTBEAT_KEY, price_key
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.llm.trading_decision import Action
from triplegain_core.model.market import us_to_datetime
from triplegain_core.model.quotes import LastPrice
from triplegain_core.model.signals import IntentAction, TradeIntent
from triplegain_core.risk.guards import BreakerFailure, GuardAction, GuardSettings
from triplegain_core.risk.rules import RiskReason
from triplegain_core.storage.decision_events import DecisionEventStore
from triplegain_core.storage.trading_store import TradingStore


def _orders(db: psycopg.Connection) -> int:
    row = db.execute("SELECT count(*) FROM orders").fetchone()
    assert row is not None
    return int(row[0])


def _entry(intent_id: str, at_us: int) -> TradeIntent:
    return TradeIntent(intent_id=intent_id, strategy="walk", tested=True, symbol="XRP/USDT",
                       time=us_to_datetime(at_us), action=IntentAction.LONG, entry=0.5, stop_loss=0.495,
                       take_profit=0.52)


def test_a_stopped_streamer_blocks_entries_and_holds_decisions_until_fresh_data_returns(
    db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    clock = StepClock(START_US)
    loop = stale_market_loop(db, redis_client, clock)
    kernel, store, events = loop.kernel, TradingStore(db), DecisionEventStore(db)
    stream = DecisionStream(redis_client)

    # Within the limit (10 s) of the last trade, the loop still trades.
    clock.advance(9.5)
    loop.cycle()
    assert kernel.entry_blocks.reasons == ()
    assert kernel.on_intent(_entry("within", START_US)).approved

    # The streamer stopped: past the limit every entry is refused, and recorded as such.
    clock.advance(1)
    loop.cycle()
    assert kernel.entry_blocks.reasons == (RiskReason.STALE_MARKET,)
    assert loop.stats.market_age_s == 10.5 and "blocks=stale_market" in str(loop.stats)
    refused = kernel.on_intent(_entry("beyond", START_US))
    assert not refused.approved and RiskReason.STALE_MARKET in refused.reasons
    assert [c.check_id for c in store.risk_checks("paper") if not c.approved] == [refused.check_id]

    # A decision arriving meanwhile is held: no order, its lifecycle still APPROVED.
    orders = _orders(db)
    stream.publish(approve(db, decision("held", Action.LONG, START_US)))
    for _ in range(5):
        clock.advance(1)
        loop.cycle()
    assert _orders(db) == orders and events.state("held") is DecisionState.APPROVED

    # Fresh data: the block lifts by itself and the held decision trades.
    clock.advance(1)
    publish(redis_client, clock)
    loop.cycle()
    assert kernel.entry_blocks.reasons == ()
    assert events.state("held") is DecisionState.OPEN and _orders(db) == orders + 1

    (stale_set, stale_cleared) = store.guard_events()
    assert (stale_set.guard, stale_set.action) == (RiskReason.STALE_MARKET, GuardAction.SET)
    assert stale_set.time == us_to_datetime(START_US + 10_500_000)
    assert "10.5 s old" in stale_set.detail and "no streamer heartbeat" not in stale_set.detail
    assert (stale_cleared.guard, stale_cleared.action) == (RiskReason.STALE_MARKET, GuardAction.CLEARED)
    assert stale_cleared.time == us_to_datetime(clock.now_us)


def test_a_silent_exchange_is_stale_though_the_streamer_lives(
    db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    clock = StepClock(START_US)
    loop = stale_market_loop(db, redis_client, clock)
    for _ in range(11):
        clock.advance(1)
        publish(redis_client, clock, trade=False)  # heartbeats, no trade
        loop.cycle()
    assert loop.kernel.entry_blocks.reasons == (RiskReason.STALE_MARKET,)
    assert "streamer heartbeat 0.0 s old" in TradingStore(db).guard_events()[0].detail


def test_the_market_going_stale_again_and_again_places_no_order_while_stale(
    db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    clock = StepClock(START_US)
    loop = stale_market_loop(db, redis_client, clock)
    phases = [Phase(40), Phase(25, fresh=False, heartbeat=False), Phase(50), Phase(15, fresh=False),
              Phase(30), Phase(40, fresh=False, heartbeat=False), Phase(30)]
    run = run_stale_market(loop, db, redis_client, clock, phases)
    assert run.stale_periods == 3 and run.stale_cycles == 15 + 5 + 30
    assert run.stale_market_orders == 0
    # Every decision traded, those of the stale phases once fresh data returned: the guard held
    # them, not a dead loop (without the guard 17 of these orders are placed on the stale market).
    assert run.orders == run.decisions == 76
    sets = [e for e in TradingStore(db).guard_events() if e.action is GuardAction.SET]
    assert len(sets) == 3


def test_decisions_expire_on_the_wall_clock_as_well_as_on_market_time(
    db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    clock = StepClock(START_US)
    # A guard far more patient than the decision: only the wall-clock expiry can refuse it.
    loop = stale_market_loop(db, redis_client, clock, GuardSettings(stale_market_s=3600))
    DecisionStream(redis_client).publish(approve(db, decision("slow", Action.LONG, START_US, ttl_s=60)))
    clock.advance(61)
    loop.cycle()
    assert loop.kernel.entry_blocks.reasons == ()
    events = DecisionEventStore(db)
    assert events.state("slow") is DecisionState.FAILED and "expired" in events.history("slow")[-1].reason
    assert _orders(db) == 0


def test_repeated_failures_put_every_account_in_reduce_only_until_a_quiet_period(
    db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    clock = StepClock(START_US)
    guards = GuardSettings(failure_limit=3, failure_window_s=30, failure_quiet_s=60)
    loop = stale_market_loop(db, redis_client, clock, guards)
    kernel, stream, events = loop.kernel, DecisionStream(redis_client), DecisionEventStore(db)
    stream.publish(approve(db, decision("open", Action.LONG, START_US)))
    loop.cycle()
    assert events.state("open") is DecisionState.OPEN

    for _ in range(3):
        clock.advance(5)
        publish(redis_client, clock)
        loop.kernel.record_failure(BreakerFailure.WRITE, "the database refused a write")
        loop.cycle()
    assert kernel.entry_blocks.reasons == (RiskReason.REDUCE_ONLY,)
    assert "reduce_only" in str(loop.stats)
    # Exits go on (the model's CLOSE), entries are refused.
    stream.publish(approve(db, decision("close", Action.CLOSE, clock.now_us)))
    stream.publish(approve(db, decision("again", Action.LONG, clock.now_us)))
    loop.cycle()
    assert events.state("close") is DecisionState.CLOSED
    assert events.state("again") is DecisionState.FAILED and "reduce_only" in events.history("again")[-1].reason

    # Quiet for the period: the accounts trade again.
    for _ in range(12):
        clock.advance(5)
        publish(redis_client, clock)
        loop.cycle()
    assert kernel.entry_blocks.reasons == ()
    actions = [(e.guard, e.action) for e in TradingStore(db).guard_events()]
    assert actions == [(RiskReason.REDUCE_ONLY, GuardAction.SET), (RiskReason.REDUCE_ONLY, GuardAction.CLEARED)]



def test_writes_that_failed_while_the_database_was_away_count_for_the_breaker(
    db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    # What `triplegain execute` hands a restored loop after a PostgreSQL outage: the cycle whose
    # write failed and each failed reconnection.
    clock = StepClock(START_US)
    loop = stale_market_loop(db, redis_client, clock, GuardSettings(failure_limit=3, failure_window_s=30,
                                                                    failure_quiet_s=60))
    publish(redis_client, clock)
    loop.count_failed_writes(2, "PostgreSQL out of reach: cycle not recorded")
    loop.cycle()
    assert loop.kernel.entry_blocks.reasons == () and loop.kernel.guards.failures == {"write": 2}
    loop.count_failed_writes(1, "PostgreSQL out of reach: cycle not recorded")
    clock.advance(1)
    publish(redis_client, clock)
    loop.cycle()
    assert loop.kernel.entry_blocks.reasons == (RiskReason.REDUCE_ONLY,)
    assert not loop.kernel.on_intent(_entry("refused", clock.now_us)).approved
    [event] = TradingStore(db).guard_events()
    assert event.action is GuardAction.SET and "write: PostgreSQL out of reach" in event.detail


def test_a_malformed_heartbeat_is_logged_and_ignored(
    db: psycopg.Connection, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = StepClock(START_US)
    loop = stale_market_loop(db, redis_client, clock)
    for garbage in (b"{broken", b"[1, 2]", b'{"ts_us": 1, "trades": 2, "unknown": 3}'):
        redis_client.set(HEARTBEAT_KEY, garbage)
        clock.advance(1)
        redis_client.set(price_key("XRP/USDT"), json.dumps(asdict(LastPrice("XRP/USDT", 0.5, clock.now_us))))
        loop.cycle()
        assert loop.kernel.entry_blocks.reasons == ()
    assert len([r for r in caplog.records if "heartbeat is malformed" in r.message]) == 2


def test_the_feed_thread_hands_the_guard_the_heartbeat_and_the_fresh_data(
    db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    clock = StepClock(START_US)
    loop = stale_market_loop(db, redis_client, clock)
    with loop.feeding() as feed:
        clock.advance(11)
        publish(redis_client, clock, trade=False)  # the streamer lives, the exchange is silent
        _read_twice(feed)
        loop.cycle()
        assert loop.kernel.entry_blocks.reasons == (RiskReason.STALE_MARKET,)
        clock.advance(1)
        publish(redis_client, clock)
        _read_twice(feed)
        loop.cycle()
        assert loop.kernel.entry_blocks.reasons == ()
    stale_set = TradingStore(db).guard_events()[0]
    assert "streamer heartbeat 0.0 s old" in stale_set.detail


def _read_twice(feed: HotStateFeed) -> None:
    """Wait until the feed read the hot state twice more: what was published before is gathered."""
    wanted = feed.reads + 2
    deadline = time.monotonic() + 10
    while feed.reads < wanted:
        assert time.monotonic() < deadline, "the feed stopped reading"
        time.sleep(0.002)
