"""The decision and strong-signal streams on a real Redis: round trips, expiry, refusals,
malformed entries skipped and counted, publication once per decision, the consumer group."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import redis
from pydantic import ValidationError

from triplegain_core.contracts.decision_streams import (
    DECISIONS_STREAM,
    EXECUTOR_GROUP,
    STRONG_SIGNALS_STREAM,
    DecisionConsumer,
    DecisionStream,
    StrongSignalStream,
    decision_marker_key,
)
from triplegain_core.decisions.handover import republish_approved
from triplegain_core.decisions.published import DecisionRefusal, PublishedDecision, StrongSignal
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.model.market import US_PER_SECOND, datetime_to_us
from triplegain_core.model.signals import Direction, IntentAction

T0 = datetime_to_us(datetime(2026, 3, 2, 12, tzinfo=UTC))


def _decision(action: Action = Action.LONG, confidence: float = 0.75) -> TradingDecision:
    levels = {
        Action.LONG: {"entry": 0.5, "stop_loss": 0.495, "take_profit": 0.52},
        Action.SHORT: {"entry": 0.5, "stop_loss": 0.505, "take_profit": 0.48},
    }.get(action, {"entry": None, "stop_loss": None, "take_profit": None})
    return TradingDecision(action=action, symbol="XRP/USDT", confidence=confidence,
                           position_size_pct=8.0, leverage=2.0, invalidation="below 0.49",
                           reasoning="momentum", model="claude", **levels)


def test_decisions_round_trip_in_order(redis_client: redis.Redis) -> None:
    stream = DecisionStream(redis_client)
    published = [PublishedDecision.make(f"d-{i}", "llm:claude", "claude", _decision(), T0 + i)
                 for i in range(3)]
    ids = [stream.publish(d) for d in published]
    last_id, read = stream.after("0")
    assert read == published and last_id == ids[-1]
    assert stream.after(last_id) == (last_id, [])


def test_a_decision_expires_in_market_time() -> None:
    decision = PublishedDecision.make("d", "llm:claude", "claude", _decision(), T0, ttl_s=60)
    assert decision.refusal(T0 + 59 * US_PER_SECOND) is None
    assert decision.refusal(T0 + 60 * US_PER_SECOND) is DecisionRefusal.EXPIRED


def test_hold_and_low_confidence_are_refused_close_is_not() -> None:
    hold = PublishedDecision.make("h", "a", "m", _decision(Action.HOLD), T0)
    weak = PublishedDecision.make("w", "a", "m", _decision(confidence=0.59), T0)
    weak_close = PublishedDecision.make("c", "a", "m", _decision(Action.CLOSE, confidence=0.1), T0)
    assert hold.refusal(T0) is DecisionRefusal.NOT_A_TRADE
    assert weak.refusal(T0) is DecisionRefusal.LOW_CONFIDENCE
    # Getting out is always allowed: a weak CLOSE still reaches the RiskAgent.
    assert weak_close.refusal(T0) is None
    with pytest.raises(ValueError, match="HOLD"):
        hold.intent()


def test_the_intent_carries_the_decision_unleveraged_by_trust() -> None:
    decision = PublishedDecision.make("d-7", "llm:claude", "claude", _decision(Action.SHORT), T0)
    intent = decision.intent()
    assert intent.intent_id == "d-7" and intent.action is IntentAction.SHORT
    assert intent.strategy == "llm:claude" and intent.source == "llm"
    assert (intent.entry, intent.stop_loss, intent.take_profit) == (0.5, 0.505, 0.48)
    assert intent.size_fraction == pytest.approx(0.08)
    assert intent.tested is False  # so the RiskAgent grants no leverage
    assert datetime_to_us(intent.time) == T0


def test_an_expiry_before_the_decision_is_refused() -> None:
    with pytest.raises(ValidationError, match="expires"):
        PublishedDecision(decision_id="d", account="a", source="m", decision=_decision(),
                          market_time_us=T0, expires_us=T0)


def test_malformed_entries_are_skipped_and_counted(redis_client: redis.Redis) -> None:
    stream = DecisionStream(redis_client)
    good = PublishedDecision.make("ok", "llm:claude", "claude", _decision(), T0)
    redis_client.xadd(DECISIONS_STREAM, {"d": "{not json"})
    redis_client.xadd(DECISIONS_STREAM, {"x": "wrong field"})
    # A decision whose numbers break the schema (size over 20%) is as malformed as broken JSON.
    tampered = good.model_dump(mode="json")
    tampered["decision"]["position_size_pct"] = 90.0
    redis_client.xadd(DECISIONS_STREAM, {"d": json.dumps(tampered)})
    stream.publish(good)
    _, read = stream.after("0")
    assert [d.decision_id for d in read] == ["ok"]
    assert stream.rejected == 3


def test_strong_signals_round_trip_and_bad_ones_are_skipped(redis_client: redis.Redis) -> None:
    stream = StrongSignalStream(redis_client)
    signal = StrongSignal(signal_id="s", strategy="volatility_breakout", symbol="BTC/USDT",
                          direction=Direction.SHORT, strength=0.95, ts_us=T0)
    redis_client.xadd(STRONG_SIGNALS_STREAM, {"s": '{"signal_id": "x", "symbol": "DOGE/USDT"}'})
    stream.publish(signal)
    _, read = stream.after("0")
    assert read == [signal] and stream.rejected == 1
    with pytest.raises(ValidationError):
        StrongSignal(signal_id="s", strategy="x", symbol="BTC/USDT", direction=Direction.LONG,
                     strength=1.5, ts_us=T0)


class _Approved:
    """The approved decisions of a ledger (the sweeper's view of PostgreSQL)."""

    def __init__(self, *decisions: PublishedDecision) -> None:
        self.decisions = list(decisions)

    def approved(self) -> list[PublishedDecision]:
        return self.decisions


def _xpending(client: redis.Redis) -> int:
    return int(client.xpending(DECISIONS_STREAM, EXECUTOR_GROUP)["pending"])


def test_a_decision_is_published_once_while_it_waits_and_again_once_settled(redis_client: redis.Redis) -> None:
    stream = DecisionStream(redis_client)
    decision = PublishedDecision.make("d-1", "llm:claude", "claude", _decision(), T0)
    consumer = DecisionConsumer(redis_client, "paper")
    consumer.join()
    first = stream.publish(decision)
    assert stream.publish(decision) == first and not stream.publish_missing(decision)
    assert redis_client.xlen(DECISIONS_STREAM) == 1
    assert redis_client.get(decision_marker_key("d-1")) == first.encode()
    (delivery,) = consumer.read(block_ms=100)
    assert delivery.entry_id == first and delivery.decision == decision
    assert consumer.read(block_ms=10) == [] and _xpending(redis_client) == 1
    # Acknowledged while the lifecycle still says approved (its record was lost): the sweeper
    # publishes it again, once.
    consumer.settle(delivery)
    assert _xpending(redis_client) == 0 and not redis_client.exists(decision_marker_key("d-1"))
    ledger = _Approved(decision)
    assert republish_approved(ledger, stream) == ["d-1"]
    assert republish_approved(ledger, stream) == []
    assert redis_client.xlen(DECISIONS_STREAM) == 2
    assert [d.decision.decision_id for d in consumer.read(block_ms=100)] == ["d-1"]


def test_a_consumer_gets_back_what_it_left_unsettled_and_others_claim_it_when_stale(
    redis_client: redis.Redis,
) -> None:
    stream = DecisionStream(redis_client)
    for i in range(3):
        stream.publish(PublishedDecision.make(f"d-{i}", "llm:claude", "claude", _decision(), T0 + i))
    first = DecisionConsumer(redis_client, "paper")
    first.join()
    delivered = first.read(block_ms=100)
    assert [d.decision.decision_id for d in delivered] == ["d-0", "d-1", "d-2"]
    first.settle(delivered[0])
    # Restarted under the same name: its unsettled entries come first, then the new ones.
    restarted = DecisionConsumer(redis_client, "paper")
    assert [d.decision.decision_id for d in restarted.read(block_ms=100)] == ["d-1", "d-2"]
    assert restarted.read(block_ms=10) == []
    other = DecisionConsumer(redis_client, "paper:other")
    assert other.claim(min_idle_ms=60_000) == []  # not stale yet
    assert [d.decision.decision_id for d in other.claim(min_idle_ms=0)] == ["d-1", "d-2"]
    consumers = {c["name"].decode(): c["pending"] for c in redis_client.xinfo_consumers(DECISIONS_STREAM,
                                                                                         EXECUTOR_GROUP)}
    assert consumers == {"paper": 0, "paper:other": 2}


def test_the_group_acknowledges_malformed_entries_at_once(redis_client: redis.Redis) -> None:
    consumer = DecisionConsumer(redis_client, "paper")
    consumer.join()
    consumer.join()  # joining again is harmless
    redis_client.xadd(DECISIONS_STREAM, {"d": "{not json"})
    DecisionStream(redis_client).publish(PublishedDecision.make("ok", "llm:claude", "claude", _decision(), T0))
    assert [d.decision.decision_id for d in consumer.read(block_ms=100)] == ["ok"]
    assert consumer.rejected == 1 and _xpending(redis_client) == 1
