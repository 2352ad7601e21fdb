"""Handing deliberated decisions to the executor, the same way from Dagster and from the demo.

Each decision is stored, its lifecycle started (rejected when not tradeable, pending when a
person must approve, else approved) and the approved ones published on the Redis decision
stream, in that order: what the executor can read is already in the database.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
import redis

from triplegain_core.contracts.decision_streams import DecisionStream, DeliberatedDecision
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.model.market import us_to_datetime
from triplegain_core.reporting.reports import markdown_table
from triplegain_core.storage.decision_events import DecisionEventStore
from triplegain_core.storage.decision_store import DecisionStore


def _steps(record: DeliberatedDecision, human_approval: bool) -> list[tuple[DecisionState, str]]:
    if not record.tradeable:
        return [(DecisionState.PENDING, "deliberated"), (DecisionState.REJECTED, f"refused: {record.refusal}")]
    if human_approval:
        return [(DecisionState.PENDING, "awaiting human approval")]
    return [(DecisionState.PENDING, "deliberated"), (DecisionState.APPROVED, "human approval is off")]


def hand_over(conn: psycopg.Connection, client: redis.Redis, records: Sequence[DeliberatedDecision],
              human_approval: bool) -> dict[str, DecisionState]:
    """Store ``records``, start their lifecycles, publish the approved ones; returns each state."""
    DecisionStore(conn).record(records)
    events = DecisionEventStore(conn)
    states: dict[str, DecisionState] = {}
    for record in records:
        published = record.decision
        history = events.start(published.decision_id, us_to_datetime(published.market_time_us),
                               published.source, _steps(record, human_approval))
        states[published.decision_id] = history[-1].target
    stream = DecisionStream(client)
    for record in records:
        if states[record.decision.decision_id] is DecisionState.APPROVED:
            stream.publish(record.decision)
    return states


def decisions_table(records: Sequence[DeliberatedDecision], states: dict[str, DecisionState]) -> str:
    """Each decision, its account, its lifecycle state and why it was refused, as markdown."""
    rows = [[r.decision.decision.symbol, r.decision.account, r.decision.decision.action.value,
             f"{r.decision.decision.confidence:.2f}", states[r.decision.decision_id].value, r.refusal or ""]
            for r in records]
    return markdown_table(["symbol", "account", "action", "confidence", "state", "refused because"], rows)
