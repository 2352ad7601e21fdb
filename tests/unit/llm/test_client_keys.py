"""The client's key check: a key too short to be real is named with its length, never printed."""

from __future__ import annotations

import asyncio
import logging

import pytest

from triplegain_core.llm.client import MIN_KEY_CHARS, LLMClient
from triplegain_core.llm.models import (
    NO_MODELS_MESSAGE,
    LLMAvailability,
    LLMSettings,
    LLMStatus,
    ModelConfig,
    Provider,
)

SHORT_KEY = "short-7"
LONG_KEY = "placeholder-long-enough-test-value-0123456789"


def _availability(environ: dict[str, str], *models: ModelConfig) -> LLMAvailability:
    async def probe() -> LLMAvailability:
        async with LLMClient(LLMSettings(models=models), environ=environ) as client:
            return await client.availability()

    return asyncio.run(probe())


GPT = ModelConfig(name="gpt", provider=Provider.OPENAI, model_id="gpt-4o", base_url="http://127.0.0.1:9/v1")
CLAUDE = ModelConfig(name="claude", provider=Provider.ANTHROPIC, model_id="claude-x", base_url="http://127.0.0.1:9")


def test_a_short_key_is_named_with_its_length_and_never_printed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    availability = _availability({"OPENAI_API_KEY": f"  {SHORT_KEY}\n"}, GPT)
    assert availability.status is LLMStatus.NO_MODELS_CONFIGURED
    message = availability.message
    assert message == (
        f"No LLM can be asked (model gpt: OPENAI_API_KEY is set but is {len(SHORT_KEY)} characters long; a real "
        f"key has at least {MIN_KEY_CHARS} (a server that takes any key needs one of {MIN_KEY_CHARS} or more)): "
        "trading on the rules alone.")
    assert "\n" not in message and "No LLM is configured" not in message
    assert SHORT_KEY not in message and SHORT_KEY not in caplog.text
    assert SHORT_KEY not in availability.model_dump_json()


def test_a_short_key_beside_a_ready_model_is_still_reported() -> None:
    availability = _availability({"OPENAI_API_KEY": SHORT_KEY, "ANTHROPIC_API_KEY": LONG_KEY}, CLAUDE, GPT)
    assert availability.available == ("claude",)
    assert availability.message.startswith("LLM models ready: claude; not asked: model gpt: OPENAI_API_KEY is set")
    assert SHORT_KEY not in availability.message and LONG_KEY not in availability.message


def test_a_missing_key_keeps_the_plain_no_llm_message() -> None:
    availability = _availability({}, GPT)
    assert availability.message == NO_MODELS_MESSAGE
    assert [m.reason for m in availability.models] == ["OPENAI_API_KEY is not set"]
