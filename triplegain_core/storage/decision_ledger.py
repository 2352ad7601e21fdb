"""Decisions and their lifecycles as the hand-over to the executor and human approval use them,
kept in PostgreSQL: ``llm_decisions``, ``decision_events``, and the market's current time (the
close of the latest stored 1m candle, as the executor judges expiry)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg

from triplegain_core.decisions.lifecycle import SYSTEM_ACTOR, DecisionState, Transition
from triplegain_core.decisions.published import DeliberatedDecision, PublishedDecision
from triplegain_core.model.market import US_PER_MINUTE, datetime_to_us
from triplegain_core.model.orders import OrderState
from triplegain_core.storage.decision_events import DecisionEventStore
from triplegain_core.storage.decision_store import DecisionStore


class DecisionLedger:
    """The ``HandoverLedger`` and ``ApprovalLedger`` of :mod:`triplegain_core.decisions` on one connection."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self._decisions = DecisionStore(conn)
        self._events = DecisionEventStore(conn)

    def record(self, records: Sequence[DeliberatedDecision]) -> None:
        """Store ``records`` (a decision id already stored is left as it is)."""
        self._decisions.record(records)

    def start(self, decision_id: str, at: datetime, by: str,
              steps: Sequence[tuple[DecisionState, str]]) -> tuple[Transition, ...]:
        """Write a new decision's lifecycle so far; returns it."""
        return self._events.start(decision_id, at, by, steps)

    def decision(self, decision_id: str) -> PublishedDecision | None:
        """The stored decision ``decision_id``, if any."""
        found = self._decisions.decisions(ids=[decision_id])
        return found[0].decision if found else None

    def state(self, decision_id: str) -> DecisionState | None:
        """The current lifecycle state of ``decision_id`` (None: no lifecycle)."""
        return self._events.state(decision_id)

    def history(self, decision_id: str) -> tuple[Transition, ...]:
        """Every lifecycle transition of ``decision_id``, in order (empty: no lifecycle)."""
        return self._events.history(decision_id)

    def pending(self) -> list[PublishedDecision]:
        """The decisions whose lifecycle is pending, in market-time order."""
        pending = self._events.in_state(DecisionState.PENDING)
        return [r.decision for r in self._decisions.decisions(ids=pending)] if pending else []

    def approved(self) -> list[PublishedDecision]:
        """The decisions whose lifecycle is approved (not yet taken by an executor), in market-time order."""
        approved = self._events.in_state(DecisionState.APPROVED)
        return [r.decision for r in self._decisions.decisions(ids=approved)] if approved else []

    def decision_orders(self, account: str, decision_id: str) -> list[OrderState]:
        """The states of the orders ``account`` placed for ``decision_id``: its entry, or the exit it
        asked for, each named after the risk check of the decision's intent (``<account>:<id>:...-check``)."""
        checks = [f"{account}:{decision_id}:entry-check", f"{account}:{decision_id}:close-check"]
        rows = self._conn.execute(
            "SELECT state FROM orders WHERE account = %s AND check_id = ANY(%s) ORDER BY order_id",
            (account, checks),
        ).fetchall()
        return [OrderState(state) for (state,) in rows]

    def move(self, decision_id: str, target: DecisionState, at: datetime, reason: str,
             by: str = SYSTEM_ACTOR) -> Transition:
        """Append one checked lifecycle transition."""
        return self._events.move(decision_id, target, at, reason, by=by)

    def market_now_us(self, symbol: str) -> int | None:
        """The close of the latest stored 1m candle of ``symbol`` (None: no candle yet)."""
        row = self._conn.execute(
            "SELECT max(open_time) FROM candles WHERE symbol = %s AND timeframe = '1m'", (symbol,),
        ).fetchone()
        return None if row is None or row[0] is None else datetime_to_us(row[0]) + US_PER_MINUTE
