"""Answer schemas other than the TradingDecision: how the client is told what to expect.

Deliberation asks models for more than decisions: a research case, a review of pitches, a
verdict on an open position. Each is a strict pydantic schema parsed by an :class:`AnswerParser`
on the same road as a TradingDecision (:func:`~triplegain_core.llm.trading_decision.parse_answer`),
so every answer is either a validated object or a recorded Rejection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from triplegain_core.llm.models import TRADING_DECISION_KIND, ModelResult
from triplegain_core.llm.trading_decision import (
    Rejection,
    RejectionReason,
    TradingDecision,
    parse_answer,
    parse_decision,
)

AnswerT = TypeVar("AnswerT", bound=BaseModel)
AnswerT_co = TypeVar("AnswerT_co", bound=BaseModel, covariant=True)


class AnswerParser(Protocol[AnswerT_co]):
    """Turns a model's raw text into one validated answer, or a Rejection; never raises."""

    @property
    def kind(self) -> str:
        """The answer kind recorded with every call (lower-case identifier)."""

    @property
    def schema(self) -> type[AnswerT_co]:
        """The answer's pydantic model."""

    def parse(self, raw: str, model_name: str) -> AnswerT_co | Rejection:
        """The validated answer of ``model_name``, or why it was refused."""


class DecisionParser:
    """The TradingDecision parser, optionally bound to the one symbol that was asked about."""

    kind = TRADING_DECISION_KIND
    schema = TradingDecision

    def __init__(self, symbol: str | None) -> None:
        self._symbol = symbol

    def parse(self, raw: str, model_name: str) -> TradingDecision | Rejection:
        """The validated decision (``model`` set to ``model_name``) or its Rejection."""
        return parse_decision(raw, model_name, self._symbol)


class SchemaParser(Generic[AnswerT]):
    """Parses into ``schema``; ``check`` adds rules a schema cannot state (returns a detail or None)."""

    def __init__(self, kind: str, schema: type[AnswerT],
                 check: Callable[[AnswerT], str | None] | None = None) -> None:
        self.kind = kind
        self.schema = schema
        self._check = check

    def parse(self, raw: str, model_name: str) -> AnswerT | Rejection:
        """The validated answer, or a Rejection (OUT_OF_RANGE for a failed ``check``)."""
        parsed = parse_answer(raw, self.schema)
        if isinstance(parsed, Rejection) or self._check is None:
            return parsed
        problem = self._check(parsed)
        if problem is not None:
            return Rejection(reason=RejectionReason.OUT_OF_RANGE, detail=problem)
        return parsed


class StructuredResult(BaseModel, Generic[AnswerT]):
    """One model's turn for a structured answer: its calls and the validated answer, if any."""

    model_config = ConfigDict(frozen=True)

    result: ModelResult
    answer: AnswerT | None

    @property
    def model_name(self) -> str:
        """The model that was asked."""
        return self.result.model_name

    def why_not(self) -> str:
        """Why there is no answer (the final call's rejection or failure), for audit records."""
        final = self.result.final
        if final.rejection is not None:
            return f"{final.rejection.reason.value}: {final.rejection.detail}"
        if final.failure is not None:
            return f"{final.failure.value}: {final.error_detail or ''}".rstrip(": ")
        return "answered"
