"""The decision lifecycle: allowed and illegal transitions, human approval and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triplegain_core.decisions.lifecycle import (
    ALLOWED_TRANSITIONS,
    AUTO_APPROVER,
    ApprovalConfig,
    DecisionBook,
    DecisionExpiredError,
    DecisionState,
    IllegalTransitionError,
    advance,
)
from triplegain_core.llm.trading_decision import TradingDecision

S = DecisionState
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def long_decision() -> TradingDecision:
    return TradingDecision.model_validate({
        "action": "LONG", "symbol": "XRP/USDT", "confidence": 0.7, "position_size_pct": 5.0,
        "leverage": 1.0, "entry": 2.0, "stop_loss": 1.96, "take_profit": 2.08,
        "invalidation": "below 1.96", "reasoning": "trend", "model": "claude",
    })


def test_the_whole_happy_path_is_timestamped_with_reasons() -> None:
    clock = Clock()
    book = DecisionBook(ApprovalConfig(require_human=False), clock=clock)
    record = book.submit(long_decision(), decision_id="d1")
    assert record.state is S.APPROVED
    assert [t.target for t in record.history] == [S.GENERATED, S.PENDING, S.APPROVED]
    assert record.history[0].by == "claude" and record.history[-1].by == AUTO_APPROVER
    for step, (target, seconds) in enumerate([(S.EXECUTED, 1), (S.OPEN, 1), (S.UPDATED, 60),
                                               (S.UPDATED, 60), (S.CLOSED, 60)]):
        clock.tick(seconds)
        record = book.mark("d1", target, reason=f"step {step}")
        assert record.history[-1].at == clock.now and record.history[-1].reason == f"step {step}"
    assert record.state is S.CLOSED and record.terminal
    assert [t.source for t in record.history][1:] == [t.target for t in record.history][:-1]


@pytest.mark.parametrize(("path", "illegal"), [
    ([], S.OPEN),                           # approved -> open skips execution
    ([S.EXECUTED], S.APPROVED),
    ([S.FAILED], S.OPEN),                   # failed is terminal
    ([S.EXECUTED, S.OPEN, S.CLOSED], S.UPDATED),  # closed is terminal
    ([S.EXECUTED, S.OPEN], S.FAILED),
])
def test_illegal_transitions_raise_and_change_nothing(path: list[DecisionState], illegal: DecisionState) -> None:
    book = DecisionBook(clock=Clock())
    book.submit(long_decision(), decision_id="d1")
    for target in path:
        book.mark("d1", target, reason="ok")
    before = book.get("d1")
    with pytest.raises(IllegalTransitionError) as error:
        book.mark("d1", illegal, reason="nope")
    assert f"cannot go from {before.state.value} to {illegal.value}" in str(error.value)
    assert book.get("d1") == before


def test_the_transition_table_is_closed_and_terminals_have_no_exit() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(DecisionState)
    for state in (S.REJECTED, S.EXPIRED, S.FAILED, S.CLOSED):
        assert ALLOWED_TRANSITIONS[state] == frozenset()
    record = DecisionBook(clock=Clock()).submit(long_decision())
    with pytest.raises(ValueError, match="before the last one"):
        advance(record, S.EXECUTED, at=T0 - timedelta(seconds=1), reason="time travel")


def test_human_approval_holds_pending_until_approved_or_rejected() -> None:
    clock = Clock()
    book = DecisionBook(ApprovalConfig(require_human=True, pending_ttl_s=300), clock=clock)
    first = book.submit(long_decision(), decision_id="d1")
    book.submit(long_decision(), decision_id="d2")
    assert first.state is S.PENDING and len(book.records(S.PENDING)) == 2
    with pytest.raises(IllegalTransitionError):
        book.mark("d1", S.EXECUTED, reason="executor must not run a pending decision")

    clock.tick(100)
    approved = book.approve("d1", by="alice", reason="looks right")
    assert approved.state is S.APPROVED and approved.history[-1].by == "alice"
    rejected = book.reject("d2", by="bob", reason="news risk")
    assert rejected.state is S.REJECTED and rejected.terminal
    with pytest.raises(IllegalTransitionError):
        book.approve("d2", by="alice")
    with pytest.raises(IllegalTransitionError):
        book.mark("d1", S.APPROVED, reason="approval goes through approve()")


def test_pending_decisions_expire_and_cannot_be_approved_late() -> None:
    clock = Clock()
    book = DecisionBook(ApprovalConfig(require_human=True, pending_ttl_s=300), clock=clock)
    book.submit(long_decision(), decision_id="old")
    clock.tick(200)
    book.submit(long_decision(), decision_id="new")
    clock.tick(100)  # "old" is exactly 300 s old: expired; "new" is 100 s old
    expired = book.expire_pending()
    assert [r.decision_id for r in expired] == ["old"]
    assert book.get("old").state is S.EXPIRED and book.get("new").state is S.PENDING
    assert book.expire_pending() == ()

    clock.tick(250)  # "new" is now 350 s old: approving it expires it instead
    with pytest.raises(DecisionExpiredError):
        book.approve("new", by="alice")
    assert book.get("new").state is S.EXPIRED
    assert "pending longer than 300 s" in book.get("new").history[-1].reason


def test_unknown_and_duplicate_ids() -> None:
    book = DecisionBook(clock=Clock())
    book.submit(long_decision(), decision_id="d1")
    with pytest.raises(ValueError, match="already"):
        book.submit(long_decision(), decision_id="d1")
    with pytest.raises(KeyError):
        book.approve("missing", by="alice")
