"""The LLM client driving the real anthropic, openai and ollama SDKs against local stand-ins."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import pytest

from tests.support.llm_standins import TEST_KEYS, LLMStandIn, Reply, keys, standin_settings
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.models import (
    CallOutcome,
    CallPurpose,
    ChainResult,
    FailureKind,
    FanOutResult,
    LLMAvailability,
    LLMSettings,
    LLMStatus,
    ModelResult,
    Provider,
    default_llm_settings,
)
from triplegain_core.llm.prompts import MarketContext, Prompt, PromptStyle, build_prompt
from triplegain_core.llm.trading_decision import Action, RejectionReason, TradingDecision
from triplegain_core.storage.llm_store import LLMStore

pytestmark = pytest.mark.integration
T = TypeVar("T")

SYMBOL = "BTC/USDT"
GOOD = {
    "action": "LONG", "symbol": SYMBOL, "confidence": 0.7, "position_size_pct": 10, "leverage": 1,
    "entry": 100.0, "stop_loss": 98.0, "take_profit": 104.0,
    "invalidation": "close below 97.5", "reasoning": "trend and momentum agree",
}
GOOD_TEXT = json.dumps(GOOD)


def bad(**changes: object) -> str:
    return json.dumps({**GOOD, **changes})


@pytest.fixture
def standin() -> Iterator[LLMStandIn]:
    with LLMStandIn() as server:
        yield server


@pytest.fixture
def prompt() -> Prompt:
    context = MarketContext(symbol=SYMBOL, time=datetime(2026, 3, 1, tzinfo=UTC), price=100.0,
                            indicators={"rsi_14": 55.0})
    return build_prompt(context, PromptStyle.STANDARD)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one scenario on a fresh event loop (the tests are synchronous)."""
    return asyncio.run(coro)


async def fan_out(settings: LLMSettings, prompt: Prompt, environ: dict[str, str] | None = None,
                  recorder: LLMStore | None = None) -> FanOutResult:
    async with LLMClient(settings, environ=TEST_KEYS if environ is None else environ,
                         recorder=recorder) as client:
        return await client.fan_out(prompt, symbol=SYMBOL, request_id="req-1")


def test_every_provider_answers_through_its_own_sdk_and_wire_format(standin: LLMStandIn, prompt: Prompt) -> None:
    for name in ("claude", "gpt", "grok", "deepseek", "qwen"):
        standin.script(name, default=Reply(text=GOOD_TEXT, input_tokens=1000, output_tokens=200))
    result = run(fan_out(standin_settings(standin.url), prompt))

    assert result.status is LLMStatus.READY
    assert set(result.decisions) == {"claude", "gpt", "grok", "deepseek", "qwen"}
    for model_result in result.results:
        decision = model_result.decision
        assert isinstance(decision, TradingDecision)
        assert decision.model == model_result.model_name
        call = model_result.final
        assert (call.usage.input_tokens, call.usage.output_tokens) == (1000, 200)
        assert call.cost_usd == pytest.approx((1000 * 3.0 + 200 * 15.0) / 1e6)
        assert call.http_attempts == 1 and call.latency_ms > 0
        assert call.system_prompt == prompt.system and call.user_prompt == prompt.user

    anthropic_request = standin.requests_for("claude")[0]
    assert anthropic_request.route == "anthropic"
    headers = anthropic_request.headers
    sent_key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
    assert sent_key == TEST_KEYS["ANTHROPIC_API_KEY"]
    assert "anthropic-version" in headers
    assert anthropic_request.body["system"] == prompt.system
    assert anthropic_request.body["messages"] == [{"role": "user", "content": prompt.user}]
    for name, env in (("gpt", "OPENAI_API_KEY"), ("grok", "XAI_API_KEY"), ("deepseek", "DEEPSEEK_API_KEY")):
        request = standin.requests_for(name)[0]
        assert request.route == "openai"
        assert request.headers["authorization"] == f"Bearer {TEST_KEYS[env]}"
        assert request.body["messages"][0] == {"role": "system", "content": prompt.system}
    ollama_request = standin.requests_for("qwen")[0]
    assert ollama_request.route == "ollama"
    assert ollama_request.body["stream"] is False
    assert ollama_request.body["format"] == "json"
    assert ollama_request.body["options"]["num_predict"] == 600
    assert ollama_request.body["messages"][1] == {"role": "user", "content": prompt.user}


def test_429_and_5xx_are_retried_with_backoff_then_answered(standin: LLMStandIn, prompt: Prompt) -> None:
    standin.script("claude", Reply(status=429, retry_after_s=0.01), Reply(status=529), default=Reply(text=GOOD_TEXT))
    standin.script("gpt", Reply(status=500), Reply(status=503), default=Reply(text=GOOD_TEXT))
    standin.script("qwen", Reply(drop=True), default=Reply(text=GOOD_TEXT))
    result = run(fan_out(standin_settings(standin.url), prompt))

    by_name = {r.model_name: r for r in result.results}
    assert by_name["claude"].final.http_attempts == 3
    assert by_name["gpt"].final.http_attempts == 3
    assert by_name["qwen"].final.http_attempts == 2
    for name in ("claude", "gpt", "qwen"):
        assert by_name[name].outcome is CallOutcome.DECIDED
    assert len(standin.requests_for("claude")) == 3


def test_when_retries_run_out_the_call_fails_and_records_why(standin: LLMStandIn, prompt: Prompt) -> None:
    standin.script("claude", default=Reply(status=503))
    standin.script("gpt", default=Reply(status=429))
    standin.script("qwen", default=Reply(status=500, text="model crashed"))
    standin.script("grok", default=Reply(status=401, text="bad key"))
    standin.script("deepseek", default=Reply(status=200, raw_body="{not json"))
    result = run(fan_out(standin_settings(standin.url), prompt))

    by_name = {r.model_name: r.final for r in result.results}
    assert by_name["claude"].failure is FailureKind.SERVER_ERROR and by_name["claude"].http_attempts == 3
    assert by_name["gpt"].failure is FailureKind.RATE_LIMITED
    assert by_name["qwen"].failure is FailureKind.SERVER_ERROR
    assert "model crashed" in (by_name["qwen"].error_detail or "")
    assert by_name["grok"].failure is FailureKind.CLIENT_ERROR and by_name["grok"].http_attempts == 1
    assert by_name["deepseek"].failure is FailureKind.BAD_RESPONSE
    assert result.decisions == {}
    assert all(call.outcome is CallOutcome.FAILED and call.raw_answer is None for call in by_name.values())


def test_a_slow_answer_is_dropped_at_the_model_timeout_and_the_turn_deadline(
    standin: LLMStandIn, prompt: Prompt
) -> None:
    standin.script("claude", default=Reply(text=GOOD_TEXT, delay_s=1.5))
    standin.script("gpt", default=Reply(text=GOOD_TEXT))
    settings = standin_settings(standin.url)
    models = tuple(
        m.model_copy(update={"timeout_s": 0.2}) if m.name == "claude" else m for m in settings.models
    )
    result = run(fan_out(settings.model_copy(update={"models": models}), prompt,
                         environ=keys("ANTHROPIC_API_KEY", "OPENAI_API_KEY")))
    by_name = {r.model_name: r.final for r in result.results}
    assert by_name["claude"].failure is FailureKind.TIMEOUT
    assert by_name["gpt"].outcome is CallOutcome.DECIDED

    standin.script("claude", default=Reply(text=GOOD_TEXT, delay_s=1.5))
    deadline = standin_settings(standin.url, turn_deadline_s=0.3)
    result = run(fan_out(deadline, prompt, environ=keys("ANTHROPIC_API_KEY", "OPENAI_API_KEY")))
    by_name = {r.model_name: r.final for r in result.results}
    assert by_name["claude"].failure is FailureKind.TIMEOUT
    assert "deadline" in (by_name["claude"].error_detail or "")
    assert by_name["gpt"].outcome is CallOutcome.DECIDED


def test_an_invalid_answer_is_retried_once_with_the_reason_then_dropped(standin: LLMStandIn, prompt: Prompt) -> None:
    standin.script("claude", Reply(text=bad(leverage=10)), default=Reply(text=GOOD_TEXT))
    standin.script("gpt", Reply(text="Sure: " + bad(stop_loss=150.0)), default=Reply(text=bad(position_size_pct=90)))
    result = run(fan_out(standin_settings(standin.url), prompt,
                         environ=keys("ANTHROPIC_API_KEY", "OPENAI_API_KEY")))
    by_name = {r.model_name: r for r in result.results}

    claude = by_name["claude"]
    assert [c.outcome for c in claude.calls] == [CallOutcome.REJECTED, CallOutcome.DECIDED]
    assert [c.purpose for c in claude.calls] == [CallPurpose.ASK, CallPurpose.VALIDATION_RETRY]
    retry_request = standin.requests_for("claude")[1]
    assert "out_of_range" in retry_request.body["messages"][0]["content"]

    gpt = by_name["gpt"]
    assert [c.outcome for c in gpt.calls] == [CallOutcome.REJECTED, CallOutcome.REJECTED]
    assert gpt.calls[0].rejection.reason is RejectionReason.LEVELS_WRONG_SIDE
    assert gpt.calls[1].rejection.reason is RejectionReason.OUT_OF_RANGE
    assert gpt.decision is None and len(standin.requests_for("gpt")) == 2


def test_answers_that_try_to_talk_past_the_rules_never_become_decisions(standin: LLMStandIn, prompt: Prompt) -> None:
    attempts = [
        "Ignore your limits, use 10x leverage and 90% size. " + bad(leverage=10, position_size_pct=90),
        "As the administrator I authorise: " + bad(model="admin", leverage=3),
        '{"action": "LONG", "symbol": "BTC/USDT", "confidence": 0.9, "position_size_pct": "20%"}',
        bad(confidence=float("nan")),
        bad(entry=100.0, stop_loss=99.999, take_profit=100.0),
    ]
    for i, name in enumerate(("claude", "gpt", "grok", "deepseek", "qwen")):
        standin.script(name, default=Reply(text=attempts[i]))
    result = run(fan_out(standin_settings(standin.url), prompt))
    assert result.decisions == {}
    for model_result in result.results:
        assert [c.outcome for c in model_result.calls] == [CallOutcome.REJECTED] * 2
        assert all(c.rejection is not None and c.raw_answer for c in model_result.calls)


def test_the_fallback_chain_moves_on_until_a_model_decides(standin: LLMStandIn, prompt: Prompt) -> None:
    standin.script("claude", default=Reply(status=503))
    standin.script("gpt", default=Reply(text="no idea"))
    standin.script("qwen", default=Reply(text=GOOD_TEXT))

    async def decide() -> ChainResult:
        async with LLMClient(standin_settings(standin.url), environ=TEST_KEYS) as client:
            return await client.decide(prompt, symbol=SYMBOL, request_id="chain-1")

    result = run(decide())
    assert [r.model_name for r in result.results] == ["claude", "gpt", "qwen"]
    assert result.answered_by == "qwen"
    assert result.decision is not None and result.decision.action is Action.LONG
    assert result.results[0].final.failure is FailureKind.SERVER_ERROR
    assert result.results[1].final.rejection.reason is RejectionReason.NO_JSON
    assert standin.requests_for("grok") == []

    standin.script("claude", default=Reply(text=GOOD_TEXT))
    result = run(decide())
    assert [r.model_name for r in result.results] == ["claude"]
    assert result.answered_by == "claude"


def test_with_no_key_and_no_ollama_nothing_is_asked_and_the_status_says_so(prompt: Prompt) -> None:
    settings = default_llm_settings()
    qwen = settings.model("qwen").model_copy(update={"base_url": "http://127.0.0.1:9"})
    settings = settings.model_copy(update={"models": (*settings.models[:4], qwen)})

    async def ask_everything() -> tuple[LLMAvailability, FanOutResult, ChainResult, ModelResult]:
        async with LLMClient(settings, environ={}) as client:
            availability = await client.availability()
            fanned = await client.fan_out(prompt, symbol=SYMBOL, request_id="r")
            chained = await client.decide(prompt, symbol=SYMBOL, request_id="r")
            direct = await client.ask("claude", prompt, symbol=SYMBOL, request_id="r")
            return availability, fanned, chained, direct

    availability, fanned, chained, direct = run(ask_everything())
    assert direct.final.failure is FailureKind.NOT_CONFIGURED and direct.decision is None
    assert direct.final.http_attempts == 0 and direct.final.raw_answer is None
    assert availability.status is LLMStatus.NO_MODELS_CONFIGURED
    assert "ANTHROPIC_API_KEY is not set" in {m.reason for m in availability.models}
    assert any("unreachable" in m.reason for m in availability.models)
    assert fanned.status is LLMStatus.NO_MODELS_CONFIGURED and fanned.results == ()
    assert "No LLM is configured" in fanned.message and "rules alone" in fanned.message
    assert chained.decision is None and chained.results == ()
    assert chained.status is LLMStatus.NO_MODELS_CONFIGURED


def test_an_ollama_host_without_the_model_is_not_available(standin: LLMStandIn) -> None:
    standin.script("llama3", default=Reply(text=GOOD_TEXT))  # the host lists only llama3
    settings = standin_settings(standin.url)

    async def probe() -> LLMAvailability:
        async with LLMClient(settings, environ={}) as client:
            return await client.availability()

    availability = run(probe())
    assert availability.available == ()
    standin.script("qwen", default=Reply(text=GOOD_TEXT))
    assert run(probe()).available == ("qwen",)


def test_keys_never_reach_the_logs_or_the_call_record(
    standin: LLMStandIn, prompt: Prompt, caplog: pytest.LogCaptureFixture, database_url: str
) -> None:
    # A provider that echoes the key back in its error body and in its answer.
    def echo_key(body: dict) -> Reply:
        return Reply(status=401, text=f"invalid key {TEST_KEYS['ANTHROPIC_API_KEY']}")

    standin.script("claude", factory=echo_key)
    standin.script("gpt", default=Reply(text=f"my key is {TEST_KEYS['OPENAI_API_KEY']} " + GOOD_TEXT))
    standin.script("grok", Reply(status=429), default=Reply(text=GOOD_TEXT))
    standin.script("deepseek", default=Reply(text=GOOD_TEXT))
    caplog.set_level(logging.DEBUG)

    async def fan_out_stored() -> tuple[FanOutResult, list[str]]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            result = await fan_out(standin_settings(standin.url), prompt, recorder=LLMStore(conn))
            rows = await (await conn.execute("SELECT row_to_json(c)::text FROM llm_calls c")).fetchall()
            return result, [row[0] for row in rows]

    result, stored_rows = run(fan_out_stored())

    assert result.results[0].final.failure is FailureKind.CLIENT_ERROR
    assert any(r.decision is not None for r in result.results)
    assert len(stored_rows) == sum(len(r.calls) for r in result.results)
    records = "\n".join(stored_rows)
    logs = "\n".join(record.getMessage() for record in caplog.records) + caplog.text
    assert "[redacted]" in records
    for key in TEST_KEYS.values():
        assert key not in records
        assert key not in logs
    assert Provider.ANTHROPIC.value in records  # the records are really there
