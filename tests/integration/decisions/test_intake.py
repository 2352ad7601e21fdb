"""The executor's intake of decisions on real Redis and PostgreSQL: refusals before risk, entries
the deliberation never stored refused, and each decision's lifecycle written back from the risk
check and the position."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import redis

from tests.support.decisions import store_approved
from triplegain_core.contracts.decision_streams import DECISIONS_STREAM, DecisionStream
from triplegain_core.decisions.intake import DecisionIntake
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.decisions.published import PublishedDecision
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.model.market import US_PER_MINUTE, datetime_to_us
from triplegain_core.risk.rules import RiskCheck, RiskReason
from triplegain_core.storage.decision_ledger import DecisionLedger

MADE = datetime(2026, 9, 1, 9, tzinfo=UTC)
T0 = datetime_to_us(MADE)


def _decision(decision_id: str, action: Action = Action.LONG, confidence: float = 0.8,
              ttl_s: float = 600) -> PublishedDecision:
    levels = (0.5, 0.495, 0.51) if action is Action.LONG else (None, None, None)
    decision = TradingDecision(action=action, symbol="XRP/USDT", confidence=confidence, position_size_pct=5.0,
                               leverage=1.0, entry=levels[0], stop_loss=levels[1], take_profit=levels[2],
                               invalidation="x", reasoning="y", model="claude")
    return PublishedDecision.make(decision_id, "llm:claude", "claude", decision, T0, ttl_s)


def _check(approved: bool) -> RiskCheck:
    return RiskCheck(check_id="c", account="llm:claude", time=MADE, symbol="XRP/USDT", signal_id=None,
                     position_id=None, approved=approved,
                     reasons=(RiskReason.APPROVED,) if approved else (RiskReason.DRAWDOWN_PAUSE,),
                     quantity=10.0 if approved else 0.0, notional_usdt=5.0 if approved else 0.0,
                     equity_usdt=1000.0, risk_usdt=0.05 if approved else 0.0)


def _start(events: DecisionLedger, *ids: str, action: Action = Action.LONG) -> None:
    store_approved(events, *(_decision(decision_id, action) for decision_id in ids))


def test_refusals_happen_before_risk_and_are_written_to_the_lifecycle(
    db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    events = DecisionLedger(db)
    _start(events, "fresh")
    store_approved(events, _decision("stale", ttl_s=60), _decision("weak", confidence=0.3))
    stream = DecisionStream(redis_client)
    stream.publish(_decision("fresh"))
    stream.publish(_decision("stale", ttl_s=60))
    stream.publish(_decision("weak", confidence=0.3))
    intake = DecisionIntake(stream, events, start_id="0")
    fresh = intake.poll(T0 + 2 * US_PER_MINUTE)
    assert [d.decision_id for d in fresh] == ["fresh"]
    assert intake.stats.refusals == {"expired": 1, "low_confidence": 1}
    assert events.state("stale") is DecisionState.FAILED
    assert "expired" in events.history("stale")[-1].reason and events.history("stale")[-1].by == "executor"
    assert events.state("weak") is DecisionState.FAILED
    assert intake.poll(T0 + 3 * US_PER_MINUTE) == []  # each decision is read once
    # A restarted executor reads the stream from its start: what was handled is skipped.
    intake.record_outcome(fresh[0], _check(True), "llm:claude:fresh", {"llm:claude:fresh"}, MADE)
    restarted = DecisionIntake(stream, events, start_id="0")
    assert restarted.poll(T0 + 2 * US_PER_MINUTE) == [] and restarted.stats.skipped == 3


def test_an_entry_opens_then_closes_and_a_rejected_one_fails(
    db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    events = DecisionLedger(db)
    _start(events, "entry", "blocked", "unfilled")
    intake = DecisionIntake(DecisionStream(redis_client), events)
    pid = "llm:claude:entry"
    assert intake.record_outcome(_decision("entry"), _check(True), pid, {pid}, MADE) is DecisionState.OPEN
    assert intake.record_outcome(_decision("blocked"), _check(False), "llm:claude:blocked", set(), MADE) \
        is DecisionState.FAILED
    assert "drawdown_pause" in events.history("blocked")[-1].reason
    assert intake.record_outcome(_decision("unfilled"), _check(True), "llm:claude:unfilled", set(), MADE) \
        is DecisionState.FAILED
    assert intake.track_closes({pid}, MADE) == []
    later = MADE + timedelta(minutes=7)
    assert intake.track_closes(set(), later) == ["entry"]
    assert [t.target for t in events.history("entry")][-3:] == [DecisionState.EXECUTED, DecisionState.OPEN,
                                                                 DecisionState.CLOSED]


def test_a_close_decision_goes_straight_to_closed_and_unknown_lifecycles_are_only_logged(
    db: psycopg.Connection, redis_client: redis.Redis,
) -> None:
    events = DecisionLedger(db)
    _start(events, "close", action=Action.CLOSE)
    intake = DecisionIntake(DecisionStream(redis_client), events)
    assert intake.record_outcome(_decision("close", Action.CLOSE), _check(True), "-", set(), MADE) \
        is DecisionState.CLOSED
    assert events.state("close") is DecisionState.CLOSED
    # A lifecycle gone meanwhile: the outcome is still returned, the trail is only logged.
    assert intake.record_outcome(_decision("orphan"), _check(True), "p", {"p"}, MADE) is DecisionState.OPEN
    assert events.state("orphan") is None


def test_an_entry_the_deliberation_did_not_approve_and_store_is_refused_and_never_traded(
    db: psycopg.Connection, redis_client: redis.Redis, caplog,
) -> None:
    events = DecisionLedger(db)
    genuine = _decision("genuine")
    store_approved(events, genuine, _decision("tampered"))
    store_approved(events, _decision("waiting"))
    events.move("waiting", DecisionState.FAILED, MADE, "test: handled already", by="test")
    events.record([])  # nothing stored for "forged" and "pending"
    events.start("pending", MADE, "claude", [(DecisionState.PENDING, "awaiting human approval")])
    stream = DecisionStream(redis_client)
    stream.publish(_decision("forged"))  # anyone who can write to Redis: no lifecycle at all
    stream.publish(_decision("pending"))  # stored lifecycle, but nobody approved it
    # The id of an approved decision with other numbers: not what the deliberation stored.
    tampered = _decision("tampered").model_dump(mode="json")
    tampered["decision"]["position_size_pct"] = 20.0
    redis_client.xadd(DECISIONS_STREAM, {"d": PublishedDecision.model_validate(tampered).model_dump_json()})
    stream.publish(_decision("waiting"))
    stream.publish(genuine)
    intake = DecisionIntake(stream, events, start_id="0")
    fresh = intake.poll(T0 + US_PER_MINUTE)
    assert [d.decision_id for d in fresh] == ["genuine"]
    assert intake.stats.untrusted == 3 and intake.stats.skipped == 1 and intake.stats.refused == 0
    # Their lifecycles are left as they were: the genuine decision of that id may still come.
    assert events.state("forged") is None and events.state("pending") is DecisionState.PENDING
    assert events.state("tampered") is DecisionState.APPROVED
    refused = [r.getMessage() for r in caplog.records if "never traded" in r.getMessage()]
    assert len(refused) == 3 and any("differs from the stored decision" in m for m in refused)
    assert any("forged" in m and "missing" in m for m in refused)
