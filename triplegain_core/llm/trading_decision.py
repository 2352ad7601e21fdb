"""The TradingDecision a model must answer, and the strict road from raw text to it.

A model's answer is untrusted text. :func:`parse_decision` finds the one JSON object in it (bare,
fenced or inside prose), decodes it strictly (no NaN/Infinity, no duplicate keys), checks the key
set, the types (no strings or booleans for numbers), the ranges and the sides of the price levels,
and returns either a validated :class:`TradingDecision` or a :class:`Rejection` with a
machine-readable :class:`RejectionReason`. Nothing else ever leaves this module.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from triplegain_core.model.market import TRADED_SYMBOLS

SchemaT = TypeVar("SchemaT", bound=BaseModel)

MAX_POSITION_SIZE_PCT = 20.0
MIN_LEVERAGE = 1.0
MAX_LEVERAGE = 3.0
MAX_REASONING_CHARS = 1_000
MAX_INVALIDATION_CHARS = 500
# Longer answers are refused before any scanning: the prompt asks for one small JSON object,
# and the brace scan below must stay cheap on hostile input.
MAX_ANSWER_CHARS = 20_000


class Action(StrEnum):
    """What the model proposes for the symbol."""

    LONG = "LONG"
    SHORT = "SHORT"
    HOLD = "HOLD"
    CLOSE = "CLOSE"


class RejectionReason(StrEnum):
    """Why an answer did not become a TradingDecision (stored with every rejected call)."""

    EMPTY_ANSWER = "empty_answer"
    ANSWER_TOO_LONG = "answer_too_long"
    NO_JSON = "no_json"
    MALFORMED_JSON = "malformed_json"
    AMBIGUOUS_JSON = "ambiguous_json"
    NOT_AN_OBJECT = "not_an_object"
    DUPLICATE_FIELD = "duplicate_field"
    NON_FINITE_NUMBER = "non_finite_number"
    MISSING_FIELD = "missing_field"
    EXTRA_FIELD = "extra_field"
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_ACTION = "unknown_action"
    UNKNOWN_SYMBOL = "unknown_symbol"
    SYMBOL_NOT_REQUESTED = "symbol_not_requested"
    LEVELS_MISSING = "levels_missing"
    LEVELS_WRONG_SIDE = "levels_wrong_side"
    TEXT_INVALID = "text_invalid"


class Rejection(BaseModel):
    """A refused answer: the reason code, a human-readable detail and the field at fault."""

    model_config = ConfigDict(frozen=True)

    reason: RejectionReason
    detail: str
    field: str | None = None


def _finite(**kwargs: Any) -> Any:
    return Field(allow_inf_nan=False, **kwargs)


class TradingDecision(BaseModel):
    """A model's validated proposal for one symbol. Risk validation still follows (RiskAgent).

    ``position_size_pct`` is a percentage of the portfolio (0..20). For LONG and SHORT the entry,
    stop-loss and take-profit are required and ordered (LONG: stop < entry < take-profit; SHORT:
    take-profit < entry < stop). For HOLD and CLOSE they may be null. ``model`` is the configured
    model name that answered, set by the client, never taken from the answer.
    """

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    action: Action
    symbol: str
    confidence: float = _finite(ge=0.0, le=1.0)
    position_size_pct: float = _finite(ge=0.0, le=MAX_POSITION_SIZE_PCT)
    leverage: float = _finite(ge=MIN_LEVERAGE, le=MAX_LEVERAGE)
    entry: float | None = _finite(gt=0.0)
    stop_loss: float | None = _finite(gt=0.0)
    take_profit: float | None = _finite(gt=0.0)
    invalidation: str = Field(min_length=1, max_length=MAX_INVALIDATION_CHARS)
    reasoning: str = Field(min_length=1, max_length=MAX_REASONING_CHARS)
    model: str = Field(min_length=1)

    @field_validator("action", mode="before")
    @classmethod
    def _action_any_case(cls, value: object) -> object:
        # Case is not a safety matter ("long" means LONG); anything else stays strict.
        if not isinstance(value, str):
            return value
        try:
            return Action(value.strip().upper())
        except ValueError:
            raise PydanticCustomError(
                "unknown_action", "action {action} is not one of LONG, SHORT, HOLD, CLOSE",
                {"action": value[:40]},
            ) from None

    @field_validator("symbol")
    @classmethod
    def _known_symbol(cls, value: str) -> str:
        if value not in TRADED_SYMBOLS:
            raise PydanticCustomError("unknown_symbol", "unknown symbol {symbol}", {"symbol": value})
        return value

    @field_validator("invalidation", "reasoning")
    @classmethod
    def _has_text(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("text_invalid", "blank text")
        return value

    @model_validator(mode="after")
    def _levels_on_the_right_sides(self) -> TradingDecision:
        if self.action not in (Action.LONG, Action.SHORT):
            return self
        if self.entry is None or self.stop_loss is None or self.take_profit is None:
            raise PydanticCustomError(
                "levels_missing", "{action} needs entry, stop_loss and take_profit",
                {"action": self.action.value},
            )
        if self.action is Action.LONG:
            ok = self.stop_loss < self.entry < self.take_profit
        else:
            ok = self.take_profit < self.entry < self.stop_loss
        if not ok:
            raise PydanticCustomError(
                "levels_wrong_side",
                "{action} needs stop/entry/take-profit in order, got stop={stop} entry={entry} tp={tp}",
                {"action": self.action.value, "stop": self.stop_loss, "entry": self.entry,
                 "tp": self.take_profit},
            )
        return self

    @property
    def position_fraction(self) -> float:
        """The position size as a fraction of the portfolio (0..0.2)."""
        return self.position_size_pct / 100.0


# The keys a model must answer with: every TradingDecision field but ``model``.
ANSWER_FIELDS: tuple[str, ...] = tuple(name for name in TradingDecision.model_fields if name != "model")

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)

# pydantic error types -> reasons. Anything unlisted is a type problem.
_ERROR_REASONS: dict[str, RejectionReason] = {
    "finite_number": RejectionReason.NON_FINITE_NUMBER,
    "greater_than": RejectionReason.OUT_OF_RANGE,
    "greater_than_equal": RejectionReason.OUT_OF_RANGE,
    "less_than": RejectionReason.OUT_OF_RANGE,
    "less_than_equal": RejectionReason.OUT_OF_RANGE,
    "enum": RejectionReason.UNKNOWN_ACTION,
    "unknown_action": RejectionReason.UNKNOWN_ACTION,
    "unknown_symbol": RejectionReason.UNKNOWN_SYMBOL,
    "levels_missing": RejectionReason.LEVELS_MISSING,
    "levels_wrong_side": RejectionReason.LEVELS_WRONG_SIDE,
    "text_invalid": RejectionReason.TEXT_INVALID,
    "string_too_short": RejectionReason.TEXT_INVALID,
    "string_too_long": RejectionReason.TEXT_INVALID,
    "missing": RejectionReason.MISSING_FIELD,
    "extra_forbidden": RejectionReason.EXTRA_FIELD,
}


class _AnswerError(ValueError):
    def __init__(self, reason: RejectionReason, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason=reason, detail=detail, field=field)


def _refuse_constant(name: str) -> float:
    raise _AnswerError(RejectionReason.NON_FINITE_NUMBER, f"non-finite number {name} in JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _AnswerError(RejectionReason.DUPLICATE_FIELD, f"key {key!r} appears twice", key)
        seen[key] = value
    return seen


def _reject_huge_ints(text: str) -> int:
    value = int(text)
    if abs(value) > 10**15:
        raise _AnswerError(RejectionReason.OUT_OF_RANGE, f"integer {text[:30]} is out of any range")
    return value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_keys, parse_constant=_refuse_constant, parse_int=_reject_huge_ints
)


def _candidates(text: str) -> list[str]:
    """The JSON texts the answer may hold: fenced blocks if any, else the whole text or its objects."""
    fenced = [block.strip() for block in _FENCE.findall(text) if block.strip()]
    if fenced:
        return fenced
    stripped = text.strip()
    try:
        _DECODER.decode(stripped)
        return [stripped]
    except _AnswerError:
        raise
    except (ValueError, RecursionError):
        pass
    # Prose around the object: take every top-level {...} that decodes, left to right.
    found: list[str] = []
    position = stripped.find("{")
    while position != -1:
        try:
            _, end = _DECODER.raw_decode(stripped, position)
        except _AnswerError:
            raise
        except (ValueError, RecursionError):
            position = stripped.find("{", position + 1)
            continue
        found.append(stripped[position:end])
        position = stripped.find("{", end)
    if not found and "{" in stripped:
        raise _AnswerError(RejectionReason.MALFORMED_JSON, "an object starts but never decodes (truncated?)")
    return found


def extract_answer_object(text: str) -> dict[str, Any]:
    """The single JSON object in a model's answer, decoded strictly; raises ``_AnswerError``."""
    if not text.strip():
        raise _AnswerError(RejectionReason.EMPTY_ANSWER, "the answer is empty")
    if len(text) > MAX_ANSWER_CHARS:
        raise _AnswerError(RejectionReason.ANSWER_TOO_LONG, f"{len(text)} chars > {MAX_ANSWER_CHARS}")
    candidates = _candidates(text)
    if not candidates:
        raise _AnswerError(RejectionReason.NO_JSON, "no JSON object in the answer")
    if len(candidates) > 1:
        raise _AnswerError(RejectionReason.AMBIGUOUS_JSON, f"{len(candidates)} JSON objects in the answer")
    try:
        value = _DECODER.decode(candidates[0])
    except _AnswerError:
        raise
    except (ValueError, RecursionError) as exc:
        raise _AnswerError(RejectionReason.MALFORMED_JSON, f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _AnswerError(RejectionReason.NOT_AN_OBJECT, f"JSON {type(value).__name__}, not an object")
    return value


def _check_key_set(answer: dict[str, Any]) -> None:
    missing = [name for name in ANSWER_FIELDS if name not in answer]
    if missing:
        raise _AnswerError(RejectionReason.MISSING_FIELD, f"missing {missing}", missing[0])
    extra = sorted(set(answer) - set(ANSWER_FIELDS))
    if extra:
        raise _AnswerError(RejectionReason.EXTRA_FIELD, f"unexpected {extra}", extra[0])


def _rejection_from(error: ValidationError) -> Rejection:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    reason = _ERROR_REASONS.get(first["type"], RejectionReason.WRONG_TYPE)
    return Rejection(reason=reason, detail=f"{field or 'answer'}: {first['msg']}", field=field)


def validate_answer(answer: dict[str, Any], model: str, symbol: str | None = None) -> TradingDecision:
    """Validate a decoded answer object into a TradingDecision; raises ``_AnswerError``."""
    _check_key_set(answer)
    try:
        decision = TradingDecision.model_validate({**answer, "model": model})
    except ValidationError as exc:
        raise _AnswerError(**_rejection_from(exc).model_dump()) from None
    if symbol is not None and decision.symbol != symbol:
        raise _AnswerError(
            RejectionReason.SYMBOL_NOT_REQUESTED, f"asked about {symbol}, answered {decision.symbol}",
            "symbol",
        )
    return decision


def parse_decision(raw: str, model: str, symbol: str | None = None) -> TradingDecision | Rejection:
    """A model's raw answer to a validated TradingDecision, or the Rejection saying why not.

    ``symbol``, when given, is the symbol the prompt asked about: an answer about another is refused.
    Never raises on any input text.
    """
    try:
        return validate_answer(extract_answer_object(raw), model, symbol)
    except _AnswerError as exc:
        return exc.rejection


def parse_answer(raw: str, schema: type[SchemaT]) -> SchemaT | Rejection:
    """A model's raw answer to any strict answer schema (a review, a verdict), or the Rejection.

    The same road as :func:`parse_decision`: one JSON object found strictly in the text, then
    validated by ``schema`` in strict JSON mode (no strings for numbers, no extra keys when the
    schema forbids them). Never raises on any input text.
    """
    try:
        value = extract_answer_object(raw)
        # Validated from JSON text so that enum fields take their string values under strict mode.
        return schema.model_validate_json(json.dumps(value), strict=True)
    except _AnswerError as exc:
        return exc.rejection
    except ValidationError as exc:
        return _rejection_from(exc)
