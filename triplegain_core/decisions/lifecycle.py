"""The decision lifecycle: a state machine from a generated decision to a closed position.

    generated -> pending -> approved -> executed -> open -> updated* -> closed
                        \\-> rejected  \\-> failed   \\-> closed
                        \\-> expired

Every transition is timestamped with who made it and why; an illegal one raises
:class:`IllegalTransitionError` and changes nothing. In human-approval mode a decision waits as
PENDING until :meth:`DecisionBook.approve` (or :meth:`~DecisionBook.reject`); a pending one older
than its time to live expires and can no longer be approved, so a stale idea is never executed.
Without human approval the book approves at once, as ``auto``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.llm.trading_decision import TradingDecision

AUTO_APPROVER = "auto"
SYSTEM_ACTOR = "system"


class DecisionState(StrEnum):
    """Where a decision is in its life."""

    GENERATED = "generated"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    EXECUTED = "executed"
    FAILED = "failed"
    OPEN = "open"
    UPDATED = "updated"
    CLOSED = "closed"


# Executed goes straight to closed for a decision that closes a position (nothing stays open).
ALLOWED_TRANSITIONS: dict[DecisionState, frozenset[DecisionState]] = {
    DecisionState.GENERATED: frozenset({DecisionState.PENDING, DecisionState.REJECTED}),
    DecisionState.PENDING: frozenset({DecisionState.APPROVED, DecisionState.REJECTED, DecisionState.EXPIRED}),
    DecisionState.APPROVED: frozenset({DecisionState.EXECUTED, DecisionState.FAILED}),
    DecisionState.EXECUTED: frozenset({DecisionState.OPEN, DecisionState.CLOSED}),
    DecisionState.OPEN: frozenset({DecisionState.UPDATED, DecisionState.CLOSED}),
    DecisionState.UPDATED: frozenset({DecisionState.UPDATED, DecisionState.CLOSED}),
    DecisionState.REJECTED: frozenset(),
    DecisionState.EXPIRED: frozenset(),
    DecisionState.FAILED: frozenset(),
    DecisionState.CLOSED: frozenset(),
}

TERMINAL_STATES = frozenset(state for state, targets in ALLOWED_TRANSITIONS.items() if not targets)


class IllegalTransitionError(ValueError):
    """A transition the lifecycle does not allow (the record is left unchanged)."""

    def __init__(self, decision_id: str, current: DecisionState, target: DecisionState) -> None:
        allowed = ", ".join(sorted(s.value for s in ALLOWED_TRANSITIONS[current])) or "none (terminal)"
        super().__init__(f"decision {decision_id}: cannot go from {current.value} to {target.value};"
                         f" allowed from {current.value}: {allowed}")
        self.decision_id = decision_id
        self.current = current
        self.target = target


class DecisionExpiredError(IllegalTransitionError):
    """Approval came after the pending decision's time to live: it is now EXPIRED."""


class Transition(BaseModel):
    """One step of a decision's life."""

    model_config = ConfigDict(frozen=True)

    source: DecisionState | None
    target: DecisionState
    at: datetime
    by: str = Field(min_length=1)
    reason: str = Field(min_length=1)


class DecisionRecord(BaseModel):
    """A decision and its whole history; ``state`` is the last transition's target."""

    model_config = ConfigDict(frozen=True)

    decision_id: str
    decision: TradingDecision
    expires_at: datetime | None
    history: tuple[Transition, ...] = Field(min_length=1)

    @property
    def state(self) -> DecisionState:
        """The current state."""
        return self.history[-1].target

    @property
    def terminal(self) -> bool:
        """Whether nothing can happen to it any more."""
        return self.state in TERMINAL_STATES


def advance(record: DecisionRecord, target: DecisionState, *, at: datetime, reason: str,
            by: str = SYSTEM_ACTOR) -> DecisionRecord:
    """The record after one transition; raises IllegalTransitionError when not allowed."""
    if target not in ALLOWED_TRANSITIONS[record.state]:
        raise IllegalTransitionError(record.decision_id, record.state, target)
    if at < record.history[-1].at:
        raise ValueError(f"decision {record.decision_id}: transition at {at.isoformat()} is before"
                         f" the last one at {record.history[-1].at.isoformat()}")
    step = Transition(source=record.state, target=target, at=at, by=by, reason=reason)
    return record.model_copy(update={"history": (*record.history, step)})


class ApprovalConfig(BaseModel):
    """Whether a person approves each decision, and how long a pending one lives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    require_human: bool = False
    pending_ttl_s: float = Field(default=300.0, gt=0.0)


class DecisionBook:
    """Every decision's record, moved along the lifecycle. ``clock`` gives aware UTC times."""

    def __init__(self, config: ApprovalConfig = ApprovalConfig(),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._config = config
        self._clock = clock
        self._records: dict[str, DecisionRecord] = {}

    def get(self, decision_id: str) -> DecisionRecord:
        """The record of ``decision_id`` (KeyError if unknown)."""
        try:
            return self._records[decision_id]
        except KeyError:
            raise KeyError(f"no decision {decision_id!r}") from None

    def records(self, state: DecisionState | None = None) -> tuple[DecisionRecord, ...]:
        """All records (or those in ``state``), in submission order."""
        return tuple(r for r in self._records.values() if state is None or r.state is state)

    def submit(self, decision: TradingDecision, *, reason: str = "generated by deliberation",
               decision_id: str | None = None) -> DecisionRecord:
        """Record a new decision: generated, then pending; approved at once unless a human must."""
        now = self._clock()
        decision_id = decision_id or uuid.uuid4().hex
        if decision_id in self._records:
            raise ValueError(f"decision {decision_id!r} is already in the book")
        record = DecisionRecord(
            decision_id=decision_id, decision=decision,
            expires_at=now + timedelta(seconds=self._config.pending_ttl_s),
            history=(Transition(source=None, target=DecisionState.GENERATED, at=now, by=decision.model,
                                reason=reason),),
        )
        record = advance(record, DecisionState.PENDING, at=now, reason="awaiting approval")
        if not self._config.require_human:
            record = advance(record, DecisionState.APPROVED, at=now, by=AUTO_APPROVER,
                             reason="human approval is off")
        self._records[decision_id] = record
        return record

    def approve(self, decision_id: str, *, by: str, reason: str = "approved") -> DecisionRecord:
        """A person approves a pending decision; one past its time to live expires instead."""
        record = self._expire_if_due(self.get(decision_id))
        if record.state is DecisionState.EXPIRED:
            raise DecisionExpiredError(decision_id, DecisionState.EXPIRED, DecisionState.APPROVED)
        return self._move(record, DecisionState.APPROVED, reason, by)

    def reject(self, decision_id: str, *, by: str, reason: str) -> DecisionRecord:
        """A person (or the risk check, ``by="risk"``) rejects a generated or pending decision."""
        return self._move(self.get(decision_id), DecisionState.REJECTED, reason, by)

    def expire_pending(self) -> tuple[DecisionRecord, ...]:
        """Expire every pending decision past its time to live; returns those expired now."""
        expired = []
        for record in list(self._records.values()):
            updated = self._expire_if_due(record)
            if updated is not record:
                expired.append(updated)
        return tuple(expired)

    def mark(self, decision_id: str, target: DecisionState, *, reason: str,
             by: str = SYSTEM_ACTOR) -> DecisionRecord:
        """Move a decision on (executed, failed, open, updated, closed); raises when not allowed."""
        if target in (DecisionState.APPROVED, DecisionState.EXPIRED):
            # Approval goes through approve() (expiry checked); expiry through expire_pending().
            raise IllegalTransitionError(decision_id, self.get(decision_id).state, target)
        return self._move(self.get(decision_id), target, reason, by)

    def _expire_if_due(self, record: DecisionRecord) -> DecisionRecord:
        now = self._clock()
        if record.state is not DecisionState.PENDING or record.expires_at is None or now < record.expires_at:
            return record
        return self._store(advance(record, DecisionState.EXPIRED, at=now,
                                   reason=f"pending longer than {self._config.pending_ttl_s:g} s"))

    def _move(self, record: DecisionRecord, target: DecisionState, reason: str, by: str) -> DecisionRecord:
        return self._store(advance(record, target, at=self._clock(), reason=reason, by=by))

    def _store(self, record: DecisionRecord) -> DecisionRecord:
        self._records[record.decision_id] = record
        return record
