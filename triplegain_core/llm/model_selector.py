"""The ModelSelector: voting weights and the primary model from scored past performance.

Each model's :class:`ModelScore` (return, Brier calibration, hit rate over its scored decisions)
becomes one composite in 0..1. The composite weighs the model's vote; the best composite is the
primary model, but the incumbent primary is replaced only when a challenger beats it by more than
``switch_margin`` (hysteresis), so two models of near-equal merit do not swap places every hour
on noise. A model with too few scored decisions keeps a neutral weight and cannot take over.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ModelScore(BaseModel):
    """One model's scored past performance (from the ``model_performance`` asset).

    ``return_pct`` is its paper account's return in percent; ``brier`` the mean squared gap
    between its confidence and whether the decision won (0 best, 1 worst); ``hit_rate`` the share
    of its decisions that won; ``decisions`` how many were scored.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    return_pct: float = Field(allow_inf_nan=False)
    brier: float = Field(ge=0.0, le=1.0)
    hit_rate: float = Field(ge=0.0, le=1.0)
    decisions: int = Field(ge=0)


class SelectorConfig(BaseModel):
    """How scores are combined and how reluctant the selector is to switch.

    The three ``*_weight`` values are normalised to sum 1. ``return_scale_pct`` is the return
    that maps to the top of the return term (its negative to the bottom). ``switch_margin`` is
    how much a challenger's composite must exceed the incumbent's before the primary changes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    return_weight: float = Field(default=0.4, ge=0.0)
    calibration_weight: float = Field(default=0.3, ge=0.0)
    hit_rate_weight: float = Field(default=0.3, ge=0.0)
    return_scale_pct: float = Field(default=10.0, gt=0.0)
    min_decisions: int = Field(default=20, ge=0)
    switch_margin: float = Field(default=0.05, ge=0.0, le=1.0)
    neutral_weight: float = Field(default=0.5, gt=0.0, le=1.0)
    min_weight: float = Field(default=0.05, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _some_weight(self) -> SelectorConfig:
        if self.return_weight + self.calibration_weight + self.hit_rate_weight <= 0:
            raise ValueError("at least one score weight must be positive")
        return self


def composite(score: ModelScore, config: SelectorConfig = SelectorConfig()) -> float:
    """The score in 0..1: weighted return (clamped to +-scale), calibration (1 - Brier) and hit rate."""
    total = config.return_weight + config.calibration_weight + config.hit_rate_weight
    scaled_return = min(1.0, max(0.0, 0.5 + score.return_pct / (2 * config.return_scale_pct)))
    return (config.return_weight * scaled_return + config.calibration_weight * (1.0 - score.brier)
            + config.hit_rate_weight * score.hit_rate) / total


class ModelWeight(BaseModel):
    """One model's voting weight and where it came from."""

    model_config = ConfigDict(frozen=True)

    model: str
    weight: float = Field(ge=0.0, le=1.0)
    composite: float | None
    scored: bool


class Selection(BaseModel):
    """The selector's answer: the weights, the primary model, and whether it changed and why."""

    model_config = ConfigDict(frozen=True)

    weights: tuple[ModelWeight, ...]
    primary: str | None
    previous: str | None
    switched: bool
    reason: str

    def weight_of(self) -> dict[str, float]:
        """The weights by model name, as :func:`~triplegain_core.llm.voting.votes_from` takes them."""
        return {w.model: w.weight for w in self.weights}


def select(models: Sequence[str], scores: Sequence[ModelScore], incumbent: str | None,
           config: SelectorConfig = SelectorConfig()) -> Selection:
    """Weights for ``models`` and the primary among them, keeping ``incumbent`` unless beaten.

    Pure: same inputs, same answer. The incumbent is kept while it is eligible (scored enough
    and among ``models``) and no eligible challenger's composite exceeds its own by more than
    ``switch_margin``. Without an eligible incumbent the best eligible model is taken at once;
    without any eligible model the incumbent (or the first model) stays, unscored.
    """
    by_model = {s.model: s for s in scores}
    weights: list[ModelWeight] = []
    eligible: dict[str, float] = {}
    for name in models:
        score = by_model.get(name)
        if score is None or score.decisions < config.min_decisions:
            weights.append(ModelWeight(model=name, weight=config.neutral_weight,
                                       composite=composite(score, config) if score else None, scored=False))
            continue
        value = composite(score, config)
        eligible[name] = value
        weights.append(ModelWeight(model=name, weight=max(config.min_weight, value), composite=value, scored=True))
    fallback = incumbent if incumbent in models else (models[0] if models else None)
    if not eligible:
        return Selection(weights=tuple(weights), primary=fallback, previous=incumbent,
                         switched=fallback != incumbent,
                         reason=f"no model has {config.min_decisions} scored decisions yet")
    # Ties go to configuration order, so the answer does not depend on dict iteration.
    best = max(eligible, key=lambda name: (eligible[name], -list(models).index(name)))
    if incumbent not in eligible:
        return Selection(weights=tuple(weights), primary=best, previous=incumbent,
                         switched=best != incumbent,
                         reason=f"{best} has the best composite {eligible[best]:.3f}"
                                f" ({incumbent or 'no model'} was not eligible)")
    lead = eligible[best] - eligible[incumbent]
    if best != incumbent and lead > config.switch_margin:
        return Selection(weights=tuple(weights), primary=best, previous=incumbent, switched=True,
                         reason=f"{best} beats {incumbent} by {lead:.3f} > margin {config.switch_margin:.3f}")
    return Selection(weights=tuple(weights), primary=incumbent, previous=incumbent, switched=False,
                     reason=(f"{incumbent} kept: best challenger {best} leads by {lead:.3f}"
                             f" <= margin {config.switch_margin:.3f}") if best != incumbent
                     else f"{incumbent} has the best composite {eligible[incumbent]:.3f}")


class ModelSelector:
    """Keeps the primary model across rounds, switching only past the margin (see :func:`select`)."""

    def __init__(self, models: Sequence[str], config: SelectorConfig = SelectorConfig(),
                 primary: str | None = None) -> None:
        self._models = tuple(models)
        self._config = config
        self._primary = primary

    @property
    def primary(self) -> str | None:
        """The current primary model (None until the first update, unless given)."""
        return self._primary

    def update(self, scores: Sequence[ModelScore]) -> Selection:
        """Re-select from fresh scores; the new primary is kept for the next update."""
        selection = select(self._models, scores, self._primary, self._config)
        self._primary = selection.primary
        return selection
