"""Each model's record over its stored calls: how often it answered, how right it was, at what cost.

The inputs are every stored call of a model (decided, rejected or failed) and the outcomes of
its decisions (:mod:`triplegain_core.llm.decision_outcomes`). Calibration is the Brier score of
the stated confidence against the decision turning out right: 0 is perfect, 0.25 is what a
model always saying 0.5 gets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from triplegain_core.llm.decision_outcomes import DecisionOutcome
from triplegain_core.llm.models import CallOutcome


class CallSummary(BaseModel):
    """The part of one stored call that scoring needs."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    time: datetime
    outcome: CallOutcome
    latency_ms: float
    cost_usd: float


class ModelPerformance(BaseModel):
    """One model's scorecard. Rates and means are None when there is nothing to average."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    calls: int
    decided: int
    rejected: int
    failed: int
    scored: int
    hit_rate: float | None
    mean_return_pct: float | None
    brier: float | None
    cost_usd: float
    mean_latency_ms: float | None

    @property
    def answer_rate(self) -> float | None:
        """Share of calls that ended in a valid decision."""
        return self.decided / self.calls if self.calls else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def scorecards(calls: Iterable[CallSummary], outcomes: Iterable[DecisionOutcome]) -> list[ModelPerformance]:
    """One scorecard per model that has calls or outcomes, sorted by name."""
    calls_by_model: dict[str, list[CallSummary]] = defaultdict(list)
    outcomes_by_model: dict[str, list[DecisionOutcome]] = defaultdict(list)
    for call in calls:
        calls_by_model[call.model_name].append(call)
    for outcome in outcomes:
        outcomes_by_model[outcome.model_name].append(outcome)
    cards = []
    for name in sorted(set(calls_by_model) | set(outcomes_by_model)):
        own_calls, scored = calls_by_model[name], outcomes_by_model[name]
        count = {kind: sum(c.outcome is kind for c in own_calls) for kind in CallOutcome}
        cards.append(ModelPerformance(
            model_name=name,
            calls=len(own_calls),
            decided=count[CallOutcome.DECIDED],
            rejected=count[CallOutcome.REJECTED],
            failed=count[CallOutcome.FAILED],
            scored=len(scored),
            hit_rate=_mean([1.0 if o.correct else 0.0 for o in scored]),
            mean_return_pct=_mean([o.return_pct for o in scored]),
            brier=_mean([(o.confidence - (1.0 if o.correct else 0.0)) ** 2 for o in scored]),
            cost_usd=sum(c.cost_usd for c in own_calls),
            mean_latency_ms=_mean([c.latency_ms for c in own_calls]),
        ))
    return cards
