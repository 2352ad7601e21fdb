"""The deliberated decisions (table ``llm_decisions``) and the call summaries scoring reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from triplegain_core.decisions.published import DeliberatedDecision, PublishedDecision
from triplegain_core.llm.model_performance import CallSummary
from triplegain_core.llm.models import CallOutcome
from triplegain_core.llm.trading_decision import TradingDecision
from triplegain_core.model.market import datetime_to_us, us_to_datetime

_COLUMNS = ("decision_id", "request_id", "account", "source", "mode", "symbol", "market_time",
            "expires_at", "action", "confidence", "decision", "refusal")


class DecisionStore:
    """Writes and reads ``llm_decisions``; reads ``llm_calls`` summaries."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def record(self, records: Sequence[DeliberatedDecision]) -> None:
        """Store ``records`` in one transaction; a decision id already stored is left as it is."""
        placeholders = ", ".join(["%s"] * len(_COLUMNS))
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO llm_decisions ({', '.join(_COLUMNS)}) VALUES ({placeholders})"
                " ON CONFLICT (decision_id) DO NOTHING",
                [_row(record) for record in records],
            )

    def decisions(self, *, since: datetime | None = None, source: str | None = None,
                  ids: Sequence[str] | None = None) -> list[DeliberatedDecision]:
        """Stored decisions in market-time order, optionally from ``since``, of one source, or
        of the given ids only."""
        rows = self._conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM llm_decisions"
            " WHERE (%(since)s::timestamptz IS NULL OR market_time >= %(since)s)"
            " AND (%(source)s::text IS NULL OR source = %(source)s)"
            " AND (%(ids)s::text[] IS NULL OR decision_id = ANY(%(ids)s)) ORDER BY market_time, decision_id",
            {"since": since, "source": source, "ids": None if ids is None else list(ids)},
        ).fetchall()
        return [_record(row) for row in rows]

    def call_summaries(self, since: datetime | None = None) -> list[CallSummary]:
        """Every stored LLM call (started at or after ``since``), oldest first."""
        rows = self._conn.execute(
            "SELECT model_name, time, outcome, latency_ms, cost_usd FROM llm_calls"
            " WHERE %(since)s::timestamptz IS NULL OR time >= %(since)s ORDER BY time, call_id",
            {"since": since},
        ).fetchall()
        return [CallSummary(model_name=name, time=time, outcome=CallOutcome(outcome),
                            latency_ms=latency, cost_usd=cost)
                for name, time, outcome, latency, cost in rows]


def _row(record: DeliberatedDecision) -> tuple[object, ...]:
    published = record.decision
    decision = published.decision
    return (published.decision_id, record.request_id, published.account, published.source, record.mode,
            decision.symbol, us_to_datetime(published.market_time_us), us_to_datetime(published.expires_us),
            decision.action.value, decision.confidence, Jsonb(decision.model_dump(mode="json")),
            record.refusal)


def _record(row: tuple[Any, ...]) -> DeliberatedDecision:
    values = dict(zip(_COLUMNS, row, strict=True))
    # Stored JSON is the lax form of the strict schema; it is validated again on the way out.
    decision = TradingDecision.model_validate(values["decision"], strict=False)
    published = PublishedDecision(
        decision_id=values["decision_id"], account=values["account"], source=values["source"],
        decision=decision, market_time_us=datetime_to_us(values["market_time"]),
        expires_us=datetime_to_us(values["expires_at"]),
    )
    return DeliberatedDecision(request_id=values["request_id"], mode=values["mode"], decision=published,
                          refusal=values["refusal"])
