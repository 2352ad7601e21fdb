"""``gate_decisions``: the audit trail of the confirmation gate, one row per gated signal."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from triplegain_core.decisions.gate import GateDecision, GateOutcome, Verdict
from triplegain_core.model.signals import Signal


class GateStore:
    """Writes and reads gate decisions."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def record(self, decisions: Sequence[GateDecision]) -> None:
        """Store ``decisions``; a signal already stored is left as it is."""
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO gate_decisions (signal_id, strategy, symbol, time, baseline_signal, baseline_reason,"
                " gate, gate_verdict, gate_reason, outcome, passed) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (signal_id) DO NOTHING",
                [(d.signal_id, d.strategy, d.symbol, d.time, Jsonb(d.baseline_signal.model_dump(mode="json")),
                  d.baseline_reason, d.gate, None if d.gate_verdict is None else d.gate_verdict.value, d.gate_reason,
                  d.outcome.value, d.passed) for d in decisions],
            )

    def decisions(self, strategy: str | None = None) -> list[GateDecision]:
        """Stored decisions in time order, optionally of one strategy."""
        with self._conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT * FROM gate_decisions WHERE %(s)s::text IS NULL OR strategy = %(s)s ORDER BY time, signal_id",
                {"s": strategy},
            ).fetchall()
        decided = []
        for row in rows:
            baseline = Signal.model_validate(row["baseline_signal"])
            decided.append(GateDecision(
                signal_id=row["signal_id"], strategy=row["strategy"], symbol=row["symbol"], time=row["time"],
                baseline_signal=baseline, baseline_reason=row["baseline_reason"], gate=row["gate"],
                gate_verdict=None if row["gate_verdict"] is None else Verdict(row["gate_verdict"]),
                gate_reason=row["gate_reason"], outcome=GateOutcome(row["outcome"]),
                final_signal=baseline if row["passed"] else None,
            ))
        return decided
