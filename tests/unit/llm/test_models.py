"""LLM configuration validation, call costs, prompt hashes and the typed call record."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from triplegain_core.llm.answer_cache import prompt_hash
from triplegain_core.llm.cost import call_cost_usd
from triplegain_core.llm.models import (
    NO_MODELS_MESSAGE,
    CallOutcome,
    CallPurpose,
    FailureKind,
    LLMAvailability,
    LLMCall,
    LLMSettings,
    LLMStatus,
    ModelAvailability,
    ModelConfig,
    Provider,
    TokenPrices,
    TokenUsage,
    default_llm_settings,
    unknown_models,
)


def model(name: str, **kw: object) -> ModelConfig:
    return ModelConfig(name=name, provider=kw.pop("provider", Provider.OPENAI), model_id=f"{name}-id", **kw)


def test_defaults_cover_the_five_providers_with_a_three_model_chain() -> None:
    settings = default_llm_settings()
    assert {m.provider for m in settings.models} == set(Provider)
    assert len(settings.fallback_chain) == 3
    assert all(m.timeout_s == 10.0 for m in settings.models if m.provider is not Provider.OLLAMA)
    assert settings.model("claude").prices.output_usd_per_mtok > 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"models": (model("a"), model("a"))}, "unique"),
        ({"models": (model("a"),), "fallback_chain": ("a", "b")}, "unknown models"),
        ({"models": (model("a"), model("b")), "fallback_chain": ("a", "a")}, "repeats"),
        ({"models": tuple(model(n) for n in "abcd"), "fallback_chain": tuple("abcd")}, "at most 3"),
    ],
)
def test_invalid_llm_settings_say_why(values: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LLMSettings(**values)


def test_model_config_refuses_bad_values() -> None:
    for bad in ({"timeout_s": 0}, {"max_retries": -1}, {"name": "has space"}, {"provider": "bard"}):
        with pytest.raises(ValidationError):
            ModelConfig(**{"name": "m", "provider": "openai", "model_id": "x", **bad})
    with pytest.raises(ValidationError):
        TokenPrices(input_usd_per_mtok=-1)
    with pytest.raises(KeyError, match="no model named 'zz'"):
        default_llm_settings().model("zz")


def test_cost_is_tokens_times_price_per_million() -> None:
    prices = TokenPrices(input_usd_per_mtok=3.0, output_usd_per_mtok=15.0)
    assert call_cost_usd(TokenUsage(input_tokens=2_000, output_tokens=500), prices) == pytest.approx(0.0135)
    assert call_cost_usd(TokenUsage(), prices) == 0.0


def test_prompt_hash_depends_on_model_and_both_prompts_only() -> None:
    a = model("a")
    base = prompt_hash(a, "sys", "user")
    assert base == prompt_hash(a, "sys", "user")
    assert base == prompt_hash(a.model_copy(update={"name": "renamed", "timeout_s": 3}), "sys", "user")
    for other in (prompt_hash(a, "sys2", "user"), prompt_hash(a, "sys", "user2"),
                  prompt_hash(a.model_copy(update={"model_id": "other"}), "sys", "user"),
                  prompt_hash(a.model_copy(update={"provider": Provider.XAI}), "sys", "user"),
                  prompt_hash(a.model_copy(update={"temperature": 0.7}), "sys", "user")):
        assert other != base


def test_a_call_carries_exactly_the_result_of_its_outcome() -> None:
    fields = {
        "call_id": "r:m:ask", "request_id": "r", "time": datetime.now(UTC), "model_name": "m",
        "provider": Provider.OPENAI, "model_id": "x", "symbol": "BTC/USDT", "purpose": CallPurpose.ASK,
        "prompt_hash": "h", "system_prompt": "s", "user_prompt": "u", "raw_answer": None, "http_attempts": 1,
        "latency_ms": 1.0,
    }
    LLMCall(**fields, outcome=CallOutcome.FAILED, failure=FailureKind.TIMEOUT)
    with pytest.raises(ValidationError, match="exactly its own result"):
        LLMCall(**fields, outcome=CallOutcome.DECIDED)
    with pytest.raises(ValidationError, match="exactly its own result"):
        LLMCall(**fields, outcome=CallOutcome.REJECTED, failure=FailureKind.TIMEOUT)


def test_with_no_model_available_the_status_says_so_plainly() -> None:
    none = LLMAvailability(models=(ModelAvailability(name="claude", available=False, reason="no key"),))
    assert none.status is LLMStatus.NO_MODELS_CONFIGURED
    assert none.message == NO_MODELS_MESSAGE
    assert "rules alone" in none.message
    some = LLMAvailability(models=(*none.models, ModelAvailability(name="qwen", available=True, reason="up")))
    assert some.status is LLMStatus.READY
    assert some.available == ("qwen",)


def test_unknown_model_names_get_one_line_naming_the_key_and_the_configured_models() -> None:
    with pytest.raises(ValidationError) as refused:
        LLMSettings(models=(model("claude"), model("gpt")), fallback_chain=("gpt", "claud"))
    assert ("llm.fallback_chain: unknown models ['claud']; configured models: claude, gpt; "
            "did you mean 'claude'?") in str(refused.value)
    assert unknown_models("strategies.gate_model", "oracle", ["claude"]) == (
        "strategies.gate_model: 'oracle' is not a configured llm model; configured models: claude")
    assert unknown_models("k", "claude", ["claude"]) is None
    assert unknown_models("k", None, ["claude"]) is None
    assert unknown_models("k", ("claude",), ["claude"]) is None
