"""Handing deliberated decisions to the executor, the same way from Dagster and from the demo.

Each decision is stored, its lifecycle started (rejected when not tradeable, pending when a
person must approve, else approved) and the approved ones published on the Redis decision
stream, in that order: what the executor can read is already in the database. An approved
decision whose publication was lost is published again by the executor's sweeper
(:func:`republish_approved`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from triplegain_core.decisions.lifecycle import DecisionState, Transition
from triplegain_core.decisions.published import DeliberatedDecision, PublishedDecision
from triplegain_core.model.market import us_to_datetime
from triplegain_core.reporting.reports import markdown_table

log = logging.getLogger(__name__)


class HandoverLedger(Protocol):
    """Where deliberated decisions and their lifecycles are kept
    (:class:`triplegain_core.storage.decision_ledger.DecisionLedger`)."""

    def record(self, records: Sequence[DeliberatedDecision]) -> None:
        """Store ``records`` (a decision id already stored is left as it is)."""

    def start(self, decision_id: str, at: datetime, by: str,
              steps: Sequence[tuple[DecisionState, str]]) -> tuple[Transition, ...]:
        """Write a new decision's lifecycle so far; returns it."""


class DecisionPublisher(Protocol):
    """Where the executor reads approved decisions from
    (:class:`triplegain_core.contracts.decision_streams.DecisionStream`)."""

    def publish(self, item: PublishedDecision, /) -> str:
        """Hand ``item`` to the executor; returns its stream id."""


def _steps(record: DeliberatedDecision, human_approval: bool) -> list[tuple[DecisionState, str]]:
    if not record.tradeable:
        return [(DecisionState.PENDING, "deliberated"), (DecisionState.REJECTED, f"refused: {record.refusal}")]
    if human_approval:
        return [(DecisionState.PENDING, "awaiting human approval")]
    return [(DecisionState.PENDING, "deliberated"), (DecisionState.APPROVED, "human approval is off")]


def hand_over(ledger: HandoverLedger, publisher: DecisionPublisher, records: Sequence[DeliberatedDecision],
              human_approval: bool) -> dict[str, DecisionState]:
    """Store ``records``, start their lifecycles, publish the approved ones; returns each state."""
    ledger.record(records)
    states: dict[str, DecisionState] = {}
    for record in records:
        published = record.decision
        history = ledger.start(published.decision_id, us_to_datetime(published.market_time_us),
                               published.source, _steps(record, human_approval))
        states[published.decision_id] = history[-1].target
    for record in records:
        if states[record.decision.decision_id] is DecisionState.APPROVED:
            publisher.publish(record.decision)
    return states


def decisions_table(records: Sequence[DeliberatedDecision], states: dict[str, DecisionState]) -> str:
    """Each decision, its account, its lifecycle state and why it was refused, as markdown."""
    rows = [[r.decision.decision.symbol, r.decision.account, r.decision.decision.action.value,
             f"{r.decision.decision.confidence:.2f}", states[r.decision.decision_id].value, r.refusal or ""]
            for r in records]
    return markdown_table(["symbol", "account", "action", "confidence", "state", "refused because"], rows)


class ApprovedLedger(Protocol):
    """Where the approved decisions are found
    (:class:`triplegain_core.storage.decision_ledger.DecisionLedger`)."""

    def approved(self) -> list[PublishedDecision]:
        """The decisions whose lifecycle is approved, not yet taken by an executor."""


class MissingPublisher(Protocol):
    """A publisher that appends a decision only when no entry of it waits on the stream
    (:class:`triplegain_core.contracts.decision_streams.DecisionStream`)."""

    def publish_missing(self, item: PublishedDecision, /) -> bool:
        """Append ``item`` unless it waits on the stream already; whether it was appended."""


def republish_approved(ledger: ApprovedLedger, publisher: MissingPublisher) -> list[str]:
    """Publish every approved decision that no entry on the stream carries (its publication was
    lost: a crash after the approval, Redis away, an acknowledgement ahead of the record);
    returns their ids. Publication is idempotent, so the sweep may run at any time."""
    published = [d.decision_id for d in ledger.approved() if publisher.publish_missing(d)]
    if published:
        log.warning("re-published %d approved decisions missing from the stream: %s", len(published),
                    ", ".join(published))
    return published
