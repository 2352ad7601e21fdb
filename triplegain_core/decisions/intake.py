"""The executor's side of the decision stream: fresh decisions in, lifecycle steps out.

Each cycle the executor polls the decisions published since the last one. A decision that
expired (in market time), is a HOLD or sits below the confidence floor is refused here, logged,
counted and marked FAILED in its lifecycle: it never reaches the RiskAgent, let alone an order.
Every other one goes to the RiskAgent of its own account; what became of it is written back:
EXECUTED then OPEN (an entry) or CLOSED (a close), else FAILED with the risk check's reasons.
Positions opened for a decision are watched, so their decision is CLOSED when they close.

With a lifecycle store (the executor always has one), only a decision whose stored lifecycle is
APPROVED and whose stored copy is the one delivered is traded; an entry without a stored
lifecycle, not approved, or differing from what the deliberation stored is refused and logged
(writing to Redis is not enough to trade an ``llm:*`` account). A decision whose state is past
APPROVED was already handled and is skipped. One that is still APPROVED but for which its
account already has an order was traded before its outcome could be written (a crash between
the fill and the record): its outcome is written from that order, and it is not traded again.

Each decision is settled with its source (acknowledged, on a consumer group) only once what it
led to is recorded, so a crash before that delivers it again, and the checks above make the
second delivery harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from triplegain_core.decisions.lifecycle import DecisionState, IllegalTransitionError
from triplegain_core.decisions.published import MIN_DECISION_CONFIDENCE, PublishedDecision
from triplegain_core.llm.trading_decision import Action
from triplegain_core.model.market import us_to_datetime
from triplegain_core.model.orders import OrderState
from triplegain_core.risk.rules import RiskCheck

log = logging.getLogger(__name__)
EXECUTOR_ACTOR = "executor"
# States a decision published only after approval can never be in on the stream.
_BEFORE_APPROVAL = frozenset({DecisionState.GENERATED, DecisionState.PENDING})


class DecisionSource(Protocol):
    """Where published decisions are read from (the decision stream of the hot-state contract)."""

    rejected: int  # malformed entries skipped so far

    @property
    def follows_hot_state(self) -> bool:
        """Whether its entries are read by the hot state's poll (XREAD after :attr:`DecisionIntake.last_id`)
        and handed to :meth:`parse`; False when it delivers decisions itself (a consumer group)."""
        ...

    def after(self, last_id: str) -> tuple[str, list[PublishedDecision]]:
        """The decisions published after ``last_id`` and the id read up to."""
        ...

    def parse(self, entries: Sequence[tuple[bytes, Mapping[bytes, bytes]]], last_id: str
              ) -> tuple[str, list[PublishedDecision]]:
        """The decisions of raw stream ``entries`` read elsewhere, and the id read up to."""
        ...

    def settled(self, decision: PublishedDecision) -> None:
        """What ``decision`` led to is recorded: its delivery is done (acknowledged)."""
        ...


class LifecycleStore(Protocol):
    """Where each decision, its lifecycle and its orders are kept
    (:class:`triplegain_core.storage.decision_ledger.DecisionLedger`)."""

    def state(self, decision_id: str) -> DecisionState | None:
        """The current state of ``decision_id`` (None: unknown)."""
        ...

    def move(self, decision_id: str, target: DecisionState, at: datetime, reason: str, by: str = ...) -> object:
        """Append one transition, checked against the stored state."""
        ...

    def decision(self, decision_id: str) -> PublishedDecision | None:
        """The decision as the deliberation stored it, if any."""
        ...

    def decision_orders(self, account: str, decision_id: str) -> list[OrderState]:
        """The states of the orders ``account`` placed for ``decision_id`` (none: not traded)."""
        ...


@dataclass(slots=True)
class IntakeStats:
    """What the intake did over a run."""

    received: int = 0
    skipped: int = 0
    refused: int = 0
    risk_rejected: int = 0
    executed: int = 0
    malformed: int = 0
    untrusted: int = 0  # no stored lifecycle, not approved, or not the stored decision
    recovered: int = 0  # traded before a crash; outcome written from its order
    refusals: dict[str, int] = field(default_factory=dict)


class DecisionIntake:
    """Reads decisions after ``start_id`` and keeps their lifecycles (when ``events`` is given)."""

    def __init__(self, stream: DecisionSource, events: LifecycleStore | None = None, *,
                 min_confidence: float = MIN_DECISION_CONFIDENCE, start_id: str = "$") -> None:
        self._stream = stream
        self._events = events
        self._min_confidence = min_confidence
        self._last_id = start_id
        self._watched: dict[str, str] = {}  # position id -> decision id
        self.stats = IntakeStats()

    @property
    def last_id(self) -> str:
        """The decision stream id read up to."""
        return self._last_id

    @property
    def follows_hot_state(self) -> bool:
        """Whether the hot state's poll reads the decisions for this intake (after :attr:`last_id`);
        False when its source delivers them (the executor's consumer group)."""
        return self._stream.follows_hot_state

    def poll(self, now_us: int, entries: Sequence[tuple[bytes, Mapping[bytes, bytes]]] | None = None,
             *, clock_us: int | None = None) -> list[PublishedDecision]:
        """The decisions to risk-check now, oldest first; refused ones are recorded and dropped.

        ``entries`` are the raw stream entries after :attr:`last_id` when the caller read them in
        its own round trip (the executor's poll); without them the intake reads the stream.
        A decision expires at market time ``now_us``, or at ``clock_us`` (the live executor's wall
        clock: a market that stopped moving does not keep a decision alive).
        """
        if clock_us is not None:
            now_us = max(now_us, clock_us)
        if entries is None:
            self._last_id, decisions = self._stream.after(self._last_id)
        else:
            self._last_id, decisions = self._stream.parse(entries, self._last_id)
        self.stats.malformed = self._stream.rejected
        fresh = []
        for decision in decisions:
            self.stats.received += 1
            at = us_to_datetime(max(now_us, decision.market_time_us))
            if not self._admitted(decision, at):
                self._stream.settled(decision)
                continue
            refusal = decision.refusal(now_us, self._min_confidence)
            if refusal is None:
                fresh.append(decision)
                continue
            self.stats.refused += 1
            self.stats.refusals[refusal.value] = self.stats.refusals.get(refusal.value, 0) + 1
            log.warning("decision %s for %s refused before risk: %s", decision.decision_id, decision.account,
                        refusal.value)
            self._move(decision.decision_id, DecisionState.FAILED, at, f"refused by the executor: {refusal.value}")
            self._stream.settled(decision)
        return fresh

    def _admitted(self, decision: PublishedDecision, at: datetime) -> bool:
        """Whether ``decision`` may be judged and traded: stored, approved, the stored copy, and
        not traded yet. Every other one is skipped, refused or recovered here."""
        events = self._events
        if events is None:
            return True
        decision_id = decision.decision_id
        state = events.state(decision_id)
        if state is not None and state not in _BEFORE_APPROVAL and state is not DecisionState.APPROVED:
            self.stats.skipped += 1  # handled already (before a restart, or a second delivery)
            return False
        if state is not DecisionState.APPROVED:
            return self._untrusted(decision, f"its stored lifecycle is {state.value if state else 'missing'}")
        stored = events.decision(decision_id)
        if stored is None:
            return self._untrusted(decision, "no stored decision")
        if stored != decision:
            return self._untrusted(decision, "it differs from the stored decision")
        orders = events.decision_orders(decision.account, decision_id)
        if orders:
            self._recover(decision, orders, at)
            return False
        return True

    def _untrusted(self, decision: PublishedDecision, why: str) -> bool:
        # Its lifecycle is left alone: the genuine decision (if any) may still arrive and trade.
        self.stats.untrusted += 1
        log.error("decision %s for %s refused, never traded: %s", decision.decision_id, decision.account, why)
        return False

    def _recover(self, decision: PublishedDecision, orders: Collection[OrderState], at: datetime) -> None:
        """Write the outcome of a decision traded before its outcome was recorded."""
        self.stats.recovered += 1
        log.warning("decision %s was traded before a crash (orders %s): its outcome is written, not traded again",
                    decision.decision_id, ", ".join(state.value for state in orders))
        if not any(state in (OrderState.FILLED, OrderState.PARTIALLY_FILLED) for state in orders):
            self._move(decision.decision_id, DecisionState.FAILED, at, "approved but not filled (before a restart)")
            return
        self.stats.executed += 1
        self._move(decision.decision_id, DecisionState.EXECUTED, at, "filled before a restart")
        if decision.decision.action is Action.CLOSE:
            self._move(decision.decision_id, DecisionState.CLOSED, at, "position closed")
        else:
            self._move(decision.decision_id, DecisionState.OPEN, at, f"position {decision.account}:"
                       f"{decision.decision_id} opened")

    def refuse(self, decision: PublishedDecision, reason: str, at: datetime) -> None:
        """Refuse a decision the executor cannot route (it names no LLM account): FAILED, logged."""
        self.stats.refused += 1
        self.stats.refusals[reason] = self.stats.refusals.get(reason, 0) + 1
        log.error("decision %s refused: %s", decision.decision_id, reason)
        self._move(decision.decision_id, DecisionState.FAILED, at, f"refused by the executor: {reason}")
        self._stream.settled(decision)

    def record_outcome(self, decision: PublishedDecision, check: RiskCheck, position_id: str,
                       open_positions: Collection[str], at: datetime) -> DecisionState:
        """Write what the RiskAgent and the executor made of ``decision``; returns its new state.

        ``position_id`` is the position an entry opens; ``open_positions`` the account's open
        position ids after the attempt. The decision is settled with its source once written.
        """
        state = self._write_outcome(decision, check, position_id, open_positions, at)
        self._stream.settled(decision)
        return state

    def _write_outcome(self, decision: PublishedDecision, check: RiskCheck, position_id: str,
                       open_positions: Collection[str], at: datetime) -> DecisionState:
        if not check.approved:
            self.stats.risk_rejected += 1
            reasons = ", ".join(reason.value for reason in check.reasons)
            self._move(decision.decision_id, DecisionState.FAILED, at, f"risk check rejected: {reasons}")
            return DecisionState.FAILED
        closing = decision.decision.action is Action.CLOSE
        if not closing and position_id not in open_positions:
            self._move(decision.decision_id, DecisionState.FAILED, at, "approved but not filled")
            return DecisionState.FAILED
        self.stats.executed += 1
        self._move(decision.decision_id, DecisionState.EXECUTED, at, f"check {check.check_id} approved")
        if closing:
            self._move(decision.decision_id, DecisionState.CLOSED, at, "position closed")
            return DecisionState.CLOSED
        self._move(decision.decision_id, DecisionState.OPEN, at, f"position {position_id} opened")
        self._watched[position_id] = decision.decision_id
        return DecisionState.OPEN

    def track_closes(self, open_positions: Collection[str], at: datetime) -> list[str]:
        """Close the lifecycle of every watched position no longer open; returns their decision ids."""
        closed = [pid for pid in self._watched if pid not in open_positions]
        decided = []
        for position_id in closed:
            decision_id = self._watched.pop(position_id)
            self._move(decision_id, DecisionState.CLOSED, at, f"position {position_id} closed")
            decided.append(decision_id)
        return decided

    def _move(self, decision_id: str, target: DecisionState, at: datetime, reason: str) -> None:
        if self._events is None:
            return
        try:
            self._events.move(decision_id, target, at, reason, by=EXECUTOR_ACTOR)
        except (KeyError, IllegalTransitionError) as exc:
            # Moved elsewhere meanwhile (only an approved, stored decision gets this far).
            log.error("lifecycle of %s not updated to %s: %s", decision_id, target.value, exc)
