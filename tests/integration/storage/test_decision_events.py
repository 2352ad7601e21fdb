"""Decision lifecycles stored in ``decision_events``: only allowed transitions, in order, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from triplegain_core.decisions.lifecycle import DecisionState, IllegalTransitionError
from triplegain_core.storage.decision_events import DecisionEventStore

AT = datetime(2026, 7, 1, 12, tzinfo=UTC)


def test_a_decision_lives_from_generated_to_closed(db: psycopg.Connection) -> None:
    store = DecisionEventStore(db)
    store.start("d1", AT, "claude", [(DecisionState.PENDING, "awaiting approval"),
                                     (DecisionState.APPROVED, "human approval is off")])
    store.move("d1", DecisionState.EXECUTED, AT + timedelta(seconds=1), "filled 10 XRP", by="executor")
    store.move("d1", DecisionState.OPEN, AT + timedelta(seconds=1), "position opened", by="executor")
    store.move("d1", DecisionState.CLOSED, AT + timedelta(minutes=9), "take_profit", by="executor")
    history = store.history("d1")
    assert [t.target for t in history] == [DecisionState.GENERATED, DecisionState.PENDING, DecisionState.APPROVED,
                                           DecisionState.EXECUTED, DecisionState.OPEN, DecisionState.CLOSED]
    assert history[0].by == "claude" and history[2].by == "auto" and history[3].by == "executor"
    assert [t.source for t in history[1:]] == [t.target for t in history[:-1]]
    assert store.state("d1") is DecisionState.CLOSED


def test_illegal_transitions_are_refused_and_change_nothing(db: psycopg.Connection) -> None:
    store = DecisionEventStore(db)
    store.start("d2", AT, "gpt", [(DecisionState.PENDING, "awaiting approval")])
    with pytest.raises(IllegalTransitionError, match="cannot go from pending to executed"):
        store.move("d2", DecisionState.EXECUTED, AT, "no approval yet")
    store.move("d2", DecisionState.REJECTED, AT, "HOLD: nothing to trade")
    with pytest.raises(IllegalTransitionError, match="terminal"):
        store.move("d2", DecisionState.APPROVED, AT, "too late")
    assert [t.target for t in store.history("d2")] == [DecisionState.GENERATED, DecisionState.PENDING,
                                                        DecisionState.REJECTED]
    with pytest.raises(IllegalTransitionError):
        store.start("d3", AT, "gpt", [(DecisionState.OPEN, "skipping steps")])
    assert store.state("d3") is None
    with pytest.raises(KeyError):
        store.move("unknown", DecisionState.PENDING, AT, "x")


def test_a_second_writer_of_the_same_step_is_refused(db: psycopg.Connection) -> None:
    store = DecisionEventStore(db)
    store.start("d4", AT, "grok", [(DecisionState.PENDING, "p"), (DecisionState.APPROVED, "a")])
    with pytest.raises(psycopg.errors.UniqueViolation):
        store.start("d4", AT, "grok", [(DecisionState.PENDING, "p")])
    assert len(store.history("d4")) == 3
