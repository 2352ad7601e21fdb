"""Human approval: a person approves or rejects a pending decision, before its deadline.

In human-approval mode a deliberation round leaves its tradeable decisions pending. Approving
one checks it is still pending and not expired at the market's current time (the latest stored
1m candle close: the executor judges expiry the same way), records who approved it, and only
then publishes it to the executor. An expired decision is marked so and never published.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from triplegain_core.decisions.handover import DecisionPublisher
from triplegain_core.decisions.lifecycle import DecisionState, Transition
from triplegain_core.decisions.published import PublishedDecision
from triplegain_core.errors import UserMistake
from triplegain_core.model.market import datetime_to_us, us_to_datetime


class ApprovalLedger(Protocol):
    """Where decisions and their lifecycles are kept
    (:class:`triplegain_core.storage.decision_ledger.DecisionLedger`)."""

    def decision(self, decision_id: str) -> PublishedDecision | None:
        """The stored decision ``decision_id``, if any."""

    def state(self, decision_id: str) -> DecisionState | None:
        """The current lifecycle state of ``decision_id`` (None: no lifecycle)."""

    def pending(self) -> list[PublishedDecision]:
        """The decisions whose lifecycle is pending, oldest first."""

    def move(self, decision_id: str, target: DecisionState, at: datetime, reason: str, by: str) -> Transition:
        """Append one checked lifecycle transition."""

    def market_now_us(self, symbol: str) -> int | None:
        """The market's current time for ``symbol`` (the latest stored 1m candle's close), if known."""


class UnknownDecision(UserMistake, KeyError):
    """No decision has the id a person gave."""

    # KeyError's own str() quotes the message; this one is printed as the whole answer.
    __str__ = Exception.__str__


class DecisionNotPending(UserMistake, ValueError):
    """The decision a person named is no longer (or never was) waiting for them."""


class ApprovalOutcome(StrEnum):
    """What an approval request did."""

    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class ApprovalResult(BaseModel):
    """The decision a person acted on, and what became of it."""

    model_config = ConfigDict(frozen=True)

    decision: PublishedDecision
    outcome: ApprovalOutcome
    message: str


def pending_decisions(ledger: ApprovalLedger) -> list[PublishedDecision]:
    """Decisions waiting for a person, oldest first."""
    return ledger.pending()


def _pending(ledger: ApprovalLedger, decision_id: str) -> PublishedDecision:
    found = ledger.decision(decision_id)
    if found is None:
        raise UnknownDecision(f"no decision {decision_id!r}: `triplegain decision list` shows those"
                              " waiting for approval")
    state = ledger.state(decision_id)
    if state is not DecisionState.PENDING:
        raise DecisionNotPending(f"decision {decision_id} is {state.value if state else 'without a lifecycle'},"
                                 " not pending: only a pending decision can be approved or rejected")
    return found


def approve(ledger: ApprovalLedger, publisher: DecisionPublisher, decision_id: str, by: str,
            now: datetime | None = None) -> ApprovalResult:
    """Approve ``decision_id`` as ``by`` and publish it, unless it has expired (then mark it so).

    ``now`` is the market time to judge expiry at; by default the latest stored candle's close.
    """
    decision = _pending(ledger, decision_id)
    now_us = (datetime_to_us(now) if now is not None
              else ledger.market_now_us(decision.decision.symbol) or decision.market_time_us)
    at = us_to_datetime(max(now_us, decision.market_time_us))
    if now_us >= decision.expires_us:
        ledger.move(decision_id, DecisionState.EXPIRED, at, f"approval by {by} came after the deadline", by=by)
        return ApprovalResult(decision=decision, outcome=ApprovalOutcome.EXPIRED,
                              message=f"{decision_id} expired at {us_to_datetime(decision.expires_us):%Y-%m-%d %H:%M}"
                                      " UTC: not published")
    ledger.move(decision_id, DecisionState.APPROVED, at, "approved by a person", by=by)
    publisher.publish(decision)
    return ApprovalResult(decision=decision, outcome=ApprovalOutcome.APPROVED,
                          message=f"{decision_id} approved by {by} and handed to the executor")


def reject(ledger: ApprovalLedger, decision_id: str, by: str, reason: str) -> ApprovalResult:
    """Reject a pending decision as ``by``; it is never published."""
    decision = _pending(ledger, decision_id)
    ledger.move(decision_id, DecisionState.REJECTED, us_to_datetime(decision.market_time_us), reason, by=by)
    return ApprovalResult(decision=decision, outcome=ApprovalOutcome.REJECTED,
                          message=f"{decision_id} rejected by {by}: {reason}")
