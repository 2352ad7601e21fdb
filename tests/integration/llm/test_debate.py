"""Parallel voting and debate mode over the real SDKs against the stand-ins, calls stored in PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from tests.support.llm_standins import (
    INJECTION,
    TEST_KEYS,
    LLMStandIn,
    MemoryRecorder,
    Reply,
    Route,
    by_prompt,
    decision_json,
    standin_settings,
    system_text,
    user_text,
)
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.debate import RESEARCH_CASE_KIND, DebateResult, ResearchCase, run_debate
from triplegain_core.llm.deliberation_config import ConsensusRule, DebateConfig
from triplegain_core.llm.model_selector import ModelScore, select
from triplegain_core.llm.models import CallOutcome, LLMSettings
from triplegain_core.llm.prompts import MarketContext, PromptStyle, build_prompt
from triplegain_core.llm.trading_decision import Action, RejectionReason
from triplegain_core.llm.voting import NoTradeReason, ParallelRound, parallel_round
from triplegain_core.storage.llm_store import LLMStore

pytestmark = pytest.mark.integration

SYMBOL = "BTC/USDT"
CONTEXT = MarketContext(symbol=SYMBOL, time=datetime(2026, 3, 1, 12, tzinfo=UTC), price=100.0,
                        indicators={"rsi_14": 61.0, "ema_20": 98.5}, regime="trending_up")
BULL = {"stance": "bull", "thesis": "higher lows on rising volume", "points": ["EMA 20 rising", "RSI 61"],
        "confidence": 0.7}
BEAR = {"stance": "bear", "thesis": "momentum is stretched", "points": ["RSI near 70"], "confidence": 0.4}


@pytest.fixture
def standin() -> Iterator[LLMStandIn]:
    with LLMStandIn() as server:
        yield server


def settings(url: str) -> LLMSettings:
    return standin_settings(url)


# Parallel mode --------------------------------------------------------------------------------

async def _parallel(url: str, rule: ConsensusRule, weights: dict[str, float] | None,
                    recorder: MemoryRecorder) -> ParallelRound:
    async with LLMClient(settings(url), environ=TEST_KEYS, recorder=recorder) as client:
        return await parallel_round(client, build_prompt(CONTEXT), symbol=SYMBOL, request_id="vote-1",
                                    rule=rule, weights=weights)


def test_parallel_vote_over_five_providers_with_an_injected_answer_abstaining(standin: LLMStandIn) -> None:
    standin.script("claude", default=Reply(text=decision_json(SYMBOL, "LONG", 0.8)))
    standin.script("gpt", default=Reply(text=decision_json(SYMBOL, "LONG", 0.7, entry=101.0)))
    standin.script("grok", default=Reply(text=decision_json(SYMBOL, "LONG", 0.9)))
    standin.script("deepseek", default=Reply(text=decision_json(SYMBOL, "SHORT", 0.9)))
    standin.script("qwen", default=Reply(text=INJECTION + decision_json(SYMBOL, "LONG", 1.0, leverage=25)))
    recorder = MemoryRecorder()
    # 3 of 5 is enough at a 0.6 fraction; the injected model's LONG must not be counted.
    result = asyncio.run(_parallel(standin.url, ConsensusRule(min_fraction=0.6), None, recorder))
    consensus = result.consensus

    assert consensus.action is Action.LONG and consensus.decision is not None
    assert (consensus.agreeing, consensus.required) == (3, 3)
    votes = {v.model: v for v in consensus.votes}
    assert votes["qwen"].decision is None and votes["qwen"].abstained_because == "rejected: out_of_range"
    assert consensus.decision.leverage == 1 and consensus.decision.model == "consensus"
    assert [c.outcome for c in recorder.calls if c.model_name == "qwen"] == [CallOutcome.REJECTED] * 2

    # The same round at the default 3-of-4 fraction (4 of 5) is a no-trade HOLD with every vote kept.
    strict = asyncio.run(_parallel(standin.url, ConsensusRule(), None, MemoryRecorder())).consensus
    assert strict.no_trade is NoTradeReason.TOO_FEW_AGREE and strict.action is Action.HOLD
    assert len(strict.votes) == 5


def test_selector_weights_swing_the_vote(standin: LLMStandIn) -> None:
    for name in ("claude", "gpt"):
        standin.script(name, default=Reply(text=decision_json(SYMBOL, "LONG", 0.7)))
    standin.script("grok", default=Reply(text=decision_json(SYMBOL, "SHORT", 0.8)))
    for name in ("deepseek", "qwen"):
        standin.script(name, default=Reply(status=503))
    scores = [ModelScore(model="grok", return_pct=10, brier=0.05, hit_rate=0.8, decisions=40),
              ModelScore(model="claude", return_pct=-10, brier=0.6, hit_rate=0.2, decisions=40),
              ModelScore(model="gpt", return_pct=-10, brier=0.6, hit_rate=0.2, decisions=40)]
    selection = select(["claude", "gpt", "grok", "deepseek", "qwen"], scores, incumbent="claude")
    assert selection.primary == "grok" and selection.switched
    rule = ConsensusRule(min_agreeing=1, min_fraction=None)
    unweighted = asyncio.run(_parallel(standin.url, rule, None, MemoryRecorder())).consensus
    weighted = asyncio.run(_parallel(standin.url, rule, selection.weight_of(), MemoryRecorder())).consensus
    assert unweighted.action is Action.LONG
    assert weighted.action is Action.SHORT and weighted.decision is not None
    assert {v.model for v in weighted.votes if v.decision is None} == {"deepseek", "qwen"}


# Debate mode ----------------------------------------------------------------------------------

async def _debate(url: str, config: DebateConfig, database_url: str | None = None,
                  recorder: MemoryRecorder | None = None) -> tuple[DebateResult, list]:
    if database_url is None:
        async with LLMClient(settings(url), environ=TEST_KEYS, recorder=recorder) as client:
            return await run_debate(client, CONTEXT, config, request_id="debate-1"), []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        store = LLMStore(conn)
        async with LLMClient(settings(url), environ=TEST_KEYS, recorder=store) as client:
            result = await run_debate(client, CONTEXT, config, request_id="debate-1")
        return result, await store.calls()


def test_bull_and_bear_argue_from_the_same_data_and_the_manager_decides(
    standin: LLMStandIn, database_url: str
) -> None:
    standin.script("claude", default=Reply(text=json.dumps(BULL)))
    standin.script("gpt", default=Reply(text=json.dumps(BEAR)))
    # The manager is an Ollama model, and also pitches in nothing else.
    standin.script("qwen", default=Reply(text=decision_json(SYMBOL, "LONG", 0.65)))
    config = DebateConfig(bull_model="claude", bear_model="gpt", manager_model="qwen")
    result, stored = asyncio.run(_debate(standin.url, config, database_url))

    assert result.decision is not None and result.decision.action is Action.LONG
    assert result.decision.model == "qwen" and "decided LONG" in result.reason
    assert result.bull.answer == ResearchCase.model_validate_json(json.dumps(BULL))
    bull_body, bear_body = standin.requests_for("claude")[0].body, standin.requests_for("gpt")[0].body
    assert user_text(bull_body) == user_text(bear_body)  # the same market data
    assert "BULL researcher" in system_text(bull_body) and "BEAR researcher" in system_text(bear_body)
    manager_prompt = user_text(standin.requests_for("qwen")[0].body)
    assert "## Bull case" in manager_prompt and "higher lows on rising volume" in manager_prompt
    assert "## Bear case" in manager_prompt and "momentum is stretched" in manager_prompt

    by_request = {c.request_id: c for c in stored}
    assert set(by_request) == {"debate-1:bull", "debate-1:bear", "debate-1:manager"}
    bull_call = by_request["debate-1:bull"]
    assert bull_call.answer_kind == RESEARCH_CASE_KIND and bull_call.outcome is CallOutcome.DECIDED
    assert bull_call.decision is None and bull_call.answer == BULL
    assert by_request["debate-1:manager"].decision == result.decision


def test_one_model_may_play_two_roles(standin: LLMStandIn) -> None:
    standin.script("claude", factory=by_prompt([
        Route(("BULL researcher",), Reply(text=json.dumps(BULL))),
        Route(("portfolio manager",), Reply(text=decision_json(SYMBOL, "HOLD", 0.5))),
    ]))
    standin.script("gpt", default=Reply(text=json.dumps(BEAR)))
    recorder = MemoryRecorder()
    result, _ = asyncio.run(_debate(standin.url, DebateConfig(bull_model="claude", bear_model="gpt",
                                                             manager_model="claude"), recorder=recorder))
    assert result.decision is not None and result.decision.action is Action.HOLD
    assert len({c.call_id for c in recorder.calls}) == len(recorder.calls) == 3


@pytest.mark.parametrize(("bear_reply", "reason"), [
    ('{"stance": "bear", "thesis": "momentum is stret', RejectionReason.MALFORMED_JSON),
    (json.dumps({**BEAR, "stance": "bull"}), RejectionReason.OUT_OF_RANGE),
    (INJECTION + json.dumps({**BEAR, "confidence": 7}), RejectionReason.OUT_OF_RANGE),
    (json.dumps({**BEAR, "decision": "LONG 25x"}), RejectionReason.EXTRA_FIELD),
])
def test_a_bad_case_ends_the_debate_without_a_decision(standin: LLMStandIn, bear_reply: str,
                                                       reason: RejectionReason) -> None:
    standin.script("claude", default=Reply(text=json.dumps(BULL)))
    standin.script("gpt", default=Reply(text=bear_reply))
    standin.script("qwen", default=Reply(text=decision_json(SYMBOL, "LONG", 0.9)))
    recorder = MemoryRecorder()
    result, _ = asyncio.run(_debate(standin.url, DebateConfig(bull_model="claude", bear_model="gpt",
                                                             manager_model="qwen"), recorder=recorder))
    assert result.decision is None and result.manager is None
    assert "debate incomplete" in result.reason and reason.value in result.reason
    assert standin.requests_for("qwen") == []
    bear_calls = [c for c in recorder.calls if c.model_name == "gpt"]
    assert [c.outcome for c in bear_calls] == [CallOutcome.REJECTED] * 2
    assert all(c.rejection is not None and c.rejection.reason is reason for c in bear_calls)


def test_an_injected_manager_answer_is_a_recorded_rejection_not_a_decision(standin: LLMStandIn) -> None:
    standin.script("claude", default=Reply(text=json.dumps({**BULL, "thesis": INJECTION[:300]})))
    standin.script("gpt", default=Reply(text=json.dumps(BEAR)))
    standin.script("qwen", default=Reply(text=INJECTION + decision_json(SYMBOL, "LONG", 0.99, leverage=25,
                                                                      position_size_pct=100)))
    recorder = MemoryRecorder()
    result, _ = asyncio.run(_debate(standin.url, DebateConfig(bull_model="claude", bear_model="gpt",
                                                             manager_model="qwen"), recorder=recorder))
    assert result.decision is None and result.manager is not None
    assert "gave no valid decision (out_of_range)" in result.reason
    manager_calls = [c for c in recorder.calls if c.model_name == "qwen"]
    assert [c.outcome for c in manager_calls] == [CallOutcome.REJECTED] * 2
    # The bull's injected thesis reached the manager only as quoted JSON data.
    assert json.dumps(INJECTION[:300])[1:40] in user_text(standin.requests_for("qwen")[0].body)


def test_style_reaches_the_manager(standin: LLMStandIn) -> None:
    standin.script("claude", default=Reply(text=json.dumps(BULL)))
    standin.script("gpt", default=Reply(text=json.dumps(BEAR)))
    standin.script("qwen", default=Reply(text=decision_json(SYMBOL, "HOLD", 0.5)))
    asyncio.run(_debate(standin.url, DebateConfig(bull_model="claude", bear_model="gpt", manager_model="qwen",
                                                  style=PromptStyle.CONSERVATIVE), recorder=MemoryRecorder()))
    assert "Preserve capital first" in system_text(standin.requests_for("qwen")[0].body)
