"""How deliberation is configured: the mode, the consensus rule, the roles of a debate or a
council, and the thresholds between a model's answer and the executor.

Pure configuration (the ``[deliberation]`` section of the config file), kept apart from the
client so that reading a configuration never loads the providers' SDKs.
"""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from triplegain_core.decisions.published import DEFAULT_DECISION_TTL_S, MIN_DECISION_CONFIDENCE
from triplegain_core.llm.prompts import PromptStyle


class DeliberationMode(StrEnum):
    """How a round reaches its decisions."""

    PARALLEL = "parallel"
    DEBATE = "debate"
    COUNCIL = "council"


class ConsensusRule(BaseModel):
    """How much agreement a consensus needs.

    ``min_agreeing`` is a count of models; ``min_fraction`` a fraction of the models asked
    (rounded up). When both are set the stricter applies. ``min_confidence`` is the floor on the
    agreeing votes' weighted mean confidence (0.6, the decision path's threshold).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_agreeing: int | None = Field(default=None, ge=1)
    min_fraction: float | None = Field(default=0.75, gt=0.0, le=1.0)
    min_confidence: float = Field(default=0.6, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _some_threshold(self) -> ConsensusRule:
        if self.min_agreeing is None and self.min_fraction is None:
            raise ValueError("a consensus rule needs min_agreeing or min_fraction")
        return self

    def required(self, voters: int) -> int:
        """How many of ``voters`` models must agree (at least 1)."""
        needed = [1]
        if self.min_agreeing is not None:
            needed.append(self.min_agreeing)
        if self.min_fraction is not None:
            # The epsilon keeps 0.75 * 4 at 3, not 4, despite binary floating point.
            needed.append(math.ceil(self.min_fraction * voters - 1e-9))
        return max(needed)


class DebateConfig(BaseModel):
    """Which configured model plays each role (one model may play several)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bull_model: str
    bear_model: str
    manager_model: str
    style: PromptStyle = PromptStyle.STANDARD


class CouncilConfig(BaseModel):
    """The council's models (None: every available one) and its chairman."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chairman: str
    members: tuple[str, ...] | None = None
    style: PromptStyle = PromptStyle.STANDARD


class RoundConfig(BaseModel):
    """How a round asks and decides.

    With ``require_human_approval`` a tradeable decision waits as pending until a person approves
    it (``triplegain decision approve``); it still expires at its market-time deadline.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    style: PromptStyle = PromptStyle.STANDARD
    consensus: ConsensusRule = ConsensusRule()
    decision_ttl_s: float = Field(default=DEFAULT_DECISION_TTL_S, gt=0.0)
    min_confidence: float = Field(default=MIN_DECISION_CONFIDENCE, ge=0.0, le=1.0)
    require_human_approval: bool = False
    # The executor announces signals at least this strong, and a sensor asks the models early.
    strong_signal_strength: float = Field(default=0.8, ge=0.0, le=1.0)
    mode: DeliberationMode = DeliberationMode.PARALLEL
    debate: DebateConfig | None = None
    council: CouncilConfig | None = None

    @model_validator(mode="after")
    def _roles_of_the_mode(self) -> RoundConfig:
        if self.debate is not None and self.mode is not DeliberationMode.DEBATE:
            raise ValueError(f"debate roles are configured but the mode is {self.mode.value}")
        if self.council is not None and self.mode is not DeliberationMode.COUNCIL:
            raise ValueError(f"a council is configured but the mode is {self.mode.value}")
        return self
