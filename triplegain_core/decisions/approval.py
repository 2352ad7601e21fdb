"""Human approval: a person approves or rejects a pending decision, before its deadline.

In human-approval mode a deliberation round leaves its tradeable decisions pending. Approving
one checks it is still pending and not expired at the market's current time (the latest stored
1m candle close: the executor judges expiry the same way), records who approved it, and only
then publishes it to the executor. An expired decision is marked so and never published.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import psycopg
import redis
from pydantic import BaseModel, ConfigDict

from triplegain_core.contracts.decision_streams import DecisionStream, PublishedDecision
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.model.market import US_PER_MINUTE, datetime_to_us, us_to_datetime
from triplegain_core.storage.decision_events import DecisionEventStore
from triplegain_core.storage.decision_store import DecisionStore


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


def _market_now_us(conn: psycopg.Connection, symbol: str) -> int | None:
    row = conn.execute(
        "SELECT max(open_time) FROM candles WHERE symbol = %s AND timeframe = '1m'", (symbol,),
    ).fetchone()
    return None if row is None or row[0] is None else datetime_to_us(row[0]) + US_PER_MINUTE


def pending_decisions(conn: psycopg.Connection) -> list[PublishedDecision]:
    """Decisions waiting for a person, oldest first."""
    pending = DecisionEventStore(conn).in_state(DecisionState.PENDING)
    return [r.decision for r in DecisionStore(conn).decisions(ids=pending)] if pending else []


def _pending(conn: psycopg.Connection, decision_id: str) -> PublishedDecision:
    found = [r.decision for r in DecisionStore(conn).decisions(ids=[decision_id])]
    if not found:
        raise KeyError(f"no decision {decision_id!r}")
    state = DecisionEventStore(conn).state(decision_id)
    if state is not DecisionState.PENDING:
        raise ValueError(f"decision {decision_id} is {state.value if state else 'without a lifecycle'},"
                         " not pending: only a pending decision can be approved or rejected")
    return found[0]


def approve(conn: psycopg.Connection, client: redis.Redis, decision_id: str, by: str,
            now: datetime | None = None) -> ApprovalResult:
    """Approve ``decision_id`` as ``by`` and publish it, unless it has expired (then mark it so).

    ``now`` is the market time to judge expiry at; by default the latest stored candle's close.
    """
    decision = _pending(conn, decision_id)
    now_us = (datetime_to_us(now) if now is not None
              else _market_now_us(conn, decision.decision.symbol) or decision.market_time_us)
    events = DecisionEventStore(conn)
    at = us_to_datetime(max(now_us, decision.market_time_us))
    if now_us >= decision.expires_us:
        events.move(decision_id, DecisionState.EXPIRED, at, f"approval by {by} came after the deadline", by=by)
        return ApprovalResult(decision=decision, outcome=ApprovalOutcome.EXPIRED,
                              message=f"{decision_id} expired at {us_to_datetime(decision.expires_us):%Y-%m-%d %H:%M}"
                                      " UTC: not published")
    events.move(decision_id, DecisionState.APPROVED, at, "approved by a person", by=by)
    DecisionStream(client).publish(decision)
    return ApprovalResult(decision=decision, outcome=ApprovalOutcome.APPROVED,
                          message=f"{decision_id} approved by {by} and handed to the executor")


def reject(conn: psycopg.Connection, decision_id: str, by: str, reason: str) -> ApprovalResult:
    """Reject a pending decision as ``by``; it is never published."""
    decision = _pending(conn, decision_id)
    DecisionEventStore(conn).move(decision_id, DecisionState.REJECTED, us_to_datetime(decision.market_time_us),
                                  reason, by=by)
    return ApprovalResult(decision=decision, outcome=ApprovalOutcome.REJECTED,
                          message=f"{decision_id} rejected by {by}: {reason}")
