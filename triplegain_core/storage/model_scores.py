"""``model_scores``: the scorecards of each ``model_performance`` run and the weights they give."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import psycopg
from pydantic import BaseModel, ConfigDict

from triplegain_core.llm.model_performance import ModelPerformance
from triplegain_core.llm.model_selector import Selection


class ScoredModel(BaseModel):
    """One stored row: a model's scorecard, its paper account's return, its weight."""

    model_config = ConfigDict(frozen=True)

    performance: ModelPerformance
    account_return_pct: float | None
    weight: float
    is_primary: bool


def write_scores(conn: psycopg.Connection, computed_at: datetime, cards: Sequence[ModelPerformance],
                 account_returns: Mapping[str, float | None], selection: Selection) -> list[ScoredModel]:
    """Store one run's scorecards with the selection's weights; returns what was stored."""
    weights = selection.weight_of()
    rows = [ScoredModel(performance=card, account_return_pct=account_returns.get(card.model_name),
                        weight=weights.get(card.model_name, 1.0),
                        is_primary=card.model_name == selection.primary)
            for card in cards]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO model_scores (computed_at, model_name, calls, decided, rejected, failed, scored,"
            " hit_rate, mean_return_pct, brier, cost_usd, mean_latency_ms, account_return_pct, weight,"
            " is_primary) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (computed_at, model_name) DO NOTHING",
            [(computed_at, r.performance.model_name, r.performance.calls, r.performance.decided,
              r.performance.rejected, r.performance.failed, r.performance.scored, r.performance.hit_rate,
              r.performance.mean_return_pct, r.performance.brier, r.performance.cost_usd,
              r.performance.mean_latency_ms, r.account_return_pct, r.weight, r.is_primary) for r in rows],
        )
    return rows


def latest_weights(conn: psycopg.Connection) -> dict[str, float]:
    """The voting weight of each model from the latest scoring run (empty: none has run yet)."""
    rows = conn.execute(
        "SELECT model_name, weight FROM model_scores"
        " WHERE computed_at = (SELECT max(computed_at) FROM model_scores)"
    ).fetchall()
    return dict(rows)


def latest_primary(conn: psycopg.Connection) -> str | None:
    """The primary model of the latest scoring run, the incumbent the selector starts from."""
    row = conn.execute(
        "SELECT model_name FROM model_scores WHERE is_primary"
        " AND computed_at = (SELECT max(computed_at) FROM model_scores)"
    ).fetchone()
    return None if row is None else row[0]
