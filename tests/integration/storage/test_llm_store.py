"""Every LLM call stored in PostgreSQL, and answers recorded then replayed by prompt hash."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from tests.support.llm_standins import TEST_KEYS, LLMStandIn, Reply, keys, standin_settings
from triplegain_core.llm.answer_cache import CacheMode
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.models import CallOutcome, FailureKind, FanOutResult, LLMSettings, LLMStatus
from triplegain_core.llm.prompts import MarketContext, Prompt, PromptStyle, build_prompt
from triplegain_core.llm.trading_decision import RejectionReason
from triplegain_core.storage.llm_store import LLMStore

pytestmark = pytest.mark.integration

SYMBOL = "XRP/USDT"
GOOD = {
    "action": "SHORT", "symbol": SYMBOL, "confidence": 0.66, "position_size_pct": 5, "leverage": 1.5,
    "entry": 2.0, "stop_loss": 2.03, "take_profit": 1.94,
    "invalidation": "reclaim of 2.03", "reasoning": "lower highs, RSI rolling over",
}


@pytest.fixture
def standin() -> Iterator[LLMStandIn]:
    with LLMStandIn() as server:
        yield server


def prompt_at(price: float) -> Prompt:
    context = MarketContext(symbol=SYMBOL, time=datetime(2026, 3, 1, tzinfo=UTC), price=price)
    return build_prompt(context, PromptStyle.CONSERVATIVE)


async def fan_out_stored(database_url: str, settings: LLMSettings, prompt: Prompt, request_id: str,
                         mode: CacheMode = CacheMode.LIVE, environ: dict[str, str] | None = None,
                         ) -> tuple[FanOutResult, list]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        store = LLMStore(conn)
        async with LLMClient(settings, environ=TEST_KEYS if environ is None else environ,
                             cache=store, cache_mode=mode, recorder=store) as client:
            result = await client.fan_out(prompt, symbol=SYMBOL, request_id=request_id)
        return result, await store.calls(request_id=request_id)


def test_every_call_is_stored_with_prompts_answer_outcome_tokens_and_cost(
    standin: LLMStandIn, database_url: str
) -> None:
    standin.script("claude", default=Reply(text=json.dumps(GOOD), input_tokens=500, output_tokens=100))
    standin.script("gpt", Reply(text="```json\n{\"action\": \"SHORT\"\n```"), default=Reply(text=json.dumps(GOOD)))
    standin.script("grok", default=Reply(status=503))
    standin.script("deepseek", default=Reply(text=json.dumps({**GOOD, "leverage": 10})))
    standin.script("qwen", default=Reply(text=json.dumps(GOOD)))
    prompt = prompt_at(2.0)
    result, stored = asyncio.run(fan_out_stored(database_url, standin_settings(standin.url), prompt, "d-1"))

    in_memory = {c.call_id: c for r in result.results for c in r.calls}
    assert {c.call_id for c in stored} == set(in_memory)
    assert len(stored) == 7  # five asks, one retry each for gpt and deepseek
    for call in stored:
        assert call == in_memory[call.call_id]
        assert call.system_prompt == prompt.system
        assert call.user_prompt.startswith(prompt.user)
        assert (call.user_prompt == prompt.user) == (call.purpose.value == "ask")
    claude = in_memory["d-1:claude:ask"]
    assert claude.outcome is CallOutcome.DECIDED and claude.decision.symbol == SYMBOL
    assert claude.cost_usd == pytest.approx((500 * 3 + 100 * 15) / 1e6)
    assert in_memory["d-1:gpt:ask"].rejection.reason is RejectionReason.MALFORMED_JSON
    assert in_memory["d-1:gpt:validation_retry"].outcome is CallOutcome.DECIDED
    assert in_memory["d-1:grok:ask"].failure is FailureKind.SERVER_ERROR
    assert in_memory["d-1:deepseek:validation_retry"].rejection.reason is RejectionReason.OUT_OF_RANGE
    assert in_memory["d-1:deepseek:validation_retry"].rejection.field == "leverage"

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT outcome, count(*) FROM llm_calls GROUP BY outcome ORDER BY outcome").fetchall()
    assert dict(rows) == {"decided": 3, "failed": 1, "rejected": 3}


def test_writing_the_same_call_twice_leaves_one_row(standin: LLMStandIn, database_url: str) -> None:
    standin.script("claude", default=Reply(text=json.dumps(GOOD)))
    settings = standin_settings(standin.url)
    prompt = prompt_at(2.0)
    environ = keys("ANTHROPIC_API_KEY")
    asyncio.run(fan_out_stored(database_url, settings, prompt, "same", environ=environ))

    async def write_again() -> list:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            store = LLMStore(conn)
            calls = await store.calls(request_id="same")
            for call in calls:
                await store.record_call(call)
            return await store.calls()

    assert len(asyncio.run(write_again())) == 1


def test_recorded_answers_replay_without_network_or_cost(standin: LLMStandIn, database_url: str) -> None:
    standin.script("claude", default=Reply(text=json.dumps(GOOD)))
    standin.script("gpt", default=Reply(text="no JSON, just vibes"))
    standin.script("qwen", default=Reply(text=json.dumps({**GOOD, "confidence": 0.9})))
    settings = standin_settings(standin.url)
    environ = keys("ANTHROPIC_API_KEY", "OPENAI_API_KEY")
    recorded, _ = asyncio.run(fan_out_stored(database_url, settings, prompt_at(2.0), "rec",
                                             CacheMode.RECORD, environ))
    requests_after_recording = len(standin.requests)
    assert requests_after_recording == 4  # claude, gpt twice (rejected, then its retry), qwen

    # Replay: no keys, and the stand-in would answer differently now; nothing may reach it.
    standin.script("claude", default=Reply(status=500))
    replayed, stored = asyncio.run(fan_out_stored(database_url, settings, prompt_at(2.0), "rep",
                                                  CacheMode.REPLAY, environ={}))
    assert len(standin.requests) == requests_after_recording
    assert replayed.status is LLMStatus.READY
    by_name = {r.model_name: r for r in replayed.results}
    original = {r.model_name: r for r in recorded.results}
    for name in ("claude", "gpt", "qwen"):
        assert [c.outcome for c in by_name[name].calls] == [c.outcome for c in original[name].calls]
        assert [c.raw_answer for c in by_name[name].calls] == [c.raw_answer for c in original[name].calls]
        assert by_name[name].decision == original[name].decision
        assert all(c.from_cache and c.cost_usd == 0.0 and c.http_attempts == 0 for c in by_name[name].calls)
    # grok and deepseek were never recorded (no key then): replay says so plainly.
    for name in ("grok", "deepseek"):
        assert by_name[name].final.failure is FailureKind.NOT_CACHED
        assert "replay: no recorded answer" in by_name[name].final.error_detail
    assert {c.request_id for c in stored} == {"rep"}

    # Another prompt was never recorded: replay refuses instead of asking.
    missed, _ = asyncio.run(fan_out_stored(database_url, settings, prompt_at(2.5), "miss",
                                           CacheMode.REPLAY, environ={}))
    assert missed.decisions == {}
    assert {r.final.failure for r in missed.results} == {FailureKind.NOT_CACHED}
    assert len(standin.requests) == requests_after_recording


def test_a_cache_mode_without_a_cache_is_refused() -> None:
    with pytest.raises(ValueError, match="needs an answer cache"):
        LLMClient(LLMSettings(), cache_mode=CacheMode.REPLAY)
