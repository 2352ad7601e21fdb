"""Structured (non-decision) answers: the strict parser and how a call records them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.llm.answers import DecisionParser, SchemaParser
from triplegain_core.llm.models import TRADING_DECISION_KIND, CallOutcome, CallPurpose, LLMCall, Provider
from triplegain_core.llm.trading_decision import Rejection, RejectionReason, TradingDecision, parse_answer


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    score: int = Field(ge=1, le=10)
    note: str


def test_parse_answer_is_as_strict_as_the_decision_road() -> None:
    assert parse_answer('Here: ```json\n{"score": 3, "note": "ok"}\n```', Verdict) == Verdict(score=3, note="ok")
    cases = {
        '{"score": "3", "note": "ok"}': RejectionReason.WRONG_TYPE,
        '{"score": true, "note": "ok"}': RejectionReason.WRONG_TYPE,
        '{"score": 3.5, "note": "ok"}': RejectionReason.WRONG_TYPE,
        '{"score": 11, "note": "ok"}': RejectionReason.OUT_OF_RANGE,
        '{"score": 3, "note": "ok", "override": 1}': RejectionReason.EXTRA_FIELD,
        '{"score": 3}': RejectionReason.MISSING_FIELD,
        '{"score": 3, "score": 4, "note": "x"}': RejectionReason.DUPLICATE_FIELD,
        '{"score": 3, "note": "ok"} {"score": 9, "note": "no"}': RejectionReason.AMBIGUOUS_JSON,
        '{"score": 3, "note": ': RejectionReason.MALFORMED_JSON,
        "score 3": RejectionReason.NO_JSON,
    }
    for text, reason in cases.items():
        parsed = parse_answer(text, Verdict)
        assert isinstance(parsed, Rejection) and parsed.reason is reason, text


def test_schema_parser_check_rejects_as_out_of_range() -> None:
    parser = SchemaParser("verdict", Verdict, lambda v: "score must be odd" if v.score % 2 == 0 else None)
    assert parser.parse('{"score": 3, "note": "x"}', "m") == Verdict(score=3, note="x")
    rejected = parser.parse('{"score": 4, "note": "x"}', "m")
    assert isinstance(rejected, Rejection) and rejected.reason is RejectionReason.OUT_OF_RANGE
    assert rejected.detail == "score must be odd"


def test_decision_parser_sets_the_model_and_binds_the_symbol() -> None:
    answer = {"action": "HOLD", "symbol": "BTC/USDT", "confidence": 0.5, "position_size_pct": 0, "leverage": 1,
              "entry": None, "stop_loss": None, "take_profit": None, "invalidation": "x", "reasoning": "y"}
    parsed = DecisionParser("BTC/USDT").parse(json.dumps(answer), "claude")
    assert isinstance(parsed, TradingDecision) and parsed.model == "claude"
    other = DecisionParser("XRP/USDT").parse(json.dumps(answer), "claude")
    assert isinstance(other, Rejection) and other.reason is RejectionReason.SYMBOL_NOT_REQUESTED


def call(**fields: object) -> LLMCall:
    base: dict[str, object] = {
        "call_id": "c", "request_id": "r", "time": datetime(2026, 3, 1, tzinfo=UTC), "model_name": "m",
        "provider": Provider.OPENAI, "model_id": "m", "symbol": "BTC/USDT", "purpose": CallPurpose.ASK,
        "prompt_hash": "h", "system_prompt": "s", "user_prompt": "u", "raw_answer": "{}", "http_attempts": 1,
        "latency_ms": 1.0,
    }
    return LLMCall.model_validate({**base, **fields})


def test_a_decided_call_carries_a_decision_or_a_structured_answer_never_both() -> None:
    structured = call(outcome=CallOutcome.DECIDED, answer_kind="verdict", answer={"score": 3, "note": "x"})
    assert structured.decision is None and structured.answer == {"score": 3, "note": "x"}
    assert call(outcome=CallOutcome.FAILED, failure="timeout").answer_kind == TRADING_DECISION_KIND
    with pytest.raises(ValueError):
        call(outcome=CallOutcome.DECIDED)
    with pytest.raises(ValueError):
        call(outcome=CallOutcome.REJECTED, answer={"score": 3},
             rejection=Rejection(reason=RejectionReason.NO_JSON, detail="x"))
    decision = TradingDecision.model_validate({
        "action": "HOLD", "symbol": "BTC/USDT", "confidence": 0.5, "position_size_pct": 0, "leverage": 1,
        "entry": None, "stop_loss": None, "take_profit": None, "invalidation": "x", "reasoning": "y", "model": "m"})
    with pytest.raises(ValueError, match="not both"):
        call(outcome=CallOutcome.DECIDED, decision=decision, answer={"score": 3})
