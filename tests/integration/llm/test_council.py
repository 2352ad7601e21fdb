"""Council mode over the real SDKs: pitches, anonymous reviews against the rubric, a chairman."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

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
from triplegain_core.llm.council import REVIEW_KIND, CouncilResult, run_council
from triplegain_core.llm.deliberation_config import CouncilConfig
from triplegain_core.llm.models import CallOutcome
from triplegain_core.llm.prompts import MarketContext
from triplegain_core.llm.trading_decision import Action, RejectionReason

pytestmark = pytest.mark.integration

SYMBOL = "XRP/USDT"
CONTEXT = MarketContext(symbol=SYMBOL, time=datetime(2026, 3, 1, 12, tzinfo=UTC), price=2.0,
                        indicators={"rsi_14": 58.0})
MEMBERS = ("claude", "gpt", "grok", "deepseek")
NAMES = ("claude", "gpt", "grok", "deepseek", "qwen")
_LABEL = re.compile(r"^(Pitch [A-Z]): ", re.MULTILINE)


def reviews_of(scores: Callable[[str], int]) -> Callable[[dict], Reply]:
    """Review every pitch shown in the prompt, each criterion at ``scores(pitch JSON)``."""
    def answer(body: dict) -> Reply:
        text = user_text(body).split("## Pitches to review", 1)[1]
        sheet = []
        for line in text.strip().splitlines():
            match = _LABEL.match(line)
            if match:
                value = scores(line)
                sheet.append({"pitch": match.group(1), "comment": "reasoned",
                              "scores": {"evidence": value, "risk_reward": value, "risk_control": value,
                                         "clarity": value}})
        return Reply(text=json.dumps({"reviews": sheet}))
    return answer


def member(pitch: str, review: Callable[[dict], Reply], chair: str | None = None) -> Callable[[dict], Reply]:
    routes = [Route(("You review trading pitches",), answer=review)]
    if chair is not None:
        routes.append(Route(("You chair a council",), Reply(text=chair)))
    return by_prompt(routes, default=Reply(text=pitch))


def short_scores_high(line: str) -> int:
    return 9 if '"SHORT"' in line else 4


@pytest.fixture
def standin() -> Iterator[LLMStandIn]:
    with LLMStandIn() as server:
        yield server


async def _council(url: str, recorder: MemoryRecorder, chairman: str = "claude") -> CouncilResult:
    async with LLMClient(standin_settings(url), environ=TEST_KEYS, recorder=recorder) as client:
        return await run_council(client, CONTEXT, CouncilConfig(chairman=chairman, members=MEMBERS),
                                 request_id="council-1")


def test_pitches_are_reviewed_anonymously_by_the_others_and_the_chairman_decides(standin: LLMStandIn) -> None:
    chair = decision_json(SYMBOL, "SHORT", 0.7, entry=2.0)
    # Claude's pitch names itself: the reviewers must not see it.
    standin.script("claude", factory=member(
        decision_json(SYMBOL, "LONG", 0.7, entry=2.0, reasoning="As Claude (claude) I see higher lows"),
        reviews_of(short_scores_high), chair))
    standin.script("gpt", factory=member(decision_json(SYMBOL, "SHORT", 0.8, entry=2.0), reviews_of(short_scores_high)))
    standin.script("grok", factory=member(decision_json(SYMBOL, "HOLD", 0.5), reviews_of(short_scores_high)))
    standin.script("deepseek", factory=member(decision_json(SYMBOL, "SHORT", 0.6, entry=2.0),
                                              reviews_of(short_scores_high)))
    recorder = MemoryRecorder()
    result = asyncio.run(_council(standin.url, recorder))

    assert result.decision is not None and result.decision.action is Action.SHORT
    assert result.decision.model == "claude" and "4 pitches and 4 valid reviews" in result.reason
    label_of = {p.model: p.label for p in result.pitches}
    assert sorted(label_of.values()) == ["Pitch A", "Pitch B", "Pitch C", "Pitch D"]
    for turn in result.reviews:
        assert label_of[turn.reviewer] not in turn.labels and len(turn.labels) == 3
        assert turn.turn.answer is not None
    # Every review prompt is anonymous: no model name or id anywhere in it.
    review_bodies = [r.body for name in MEMBERS for r in standin.requests_for(name)
                     if "You review trading pitches" in system_text(r.body)]
    assert len(review_bodies) == 4
    for body in review_bodies:
        text = (system_text(body) + user_text(body)).lower()
        assert not [name for name in NAMES if name in text]
        if f"{label_of['claude']}: " in user_text(body):
            assert "As [analyst] ([analyst]) I see higher lows" in user_text(body)
    # Standings: each pitch reviewed by the 3 others; both SHORT pitches scored 9, the rest 4.
    top = result.standings[:2]
    assert {s.model for s in top} == {"gpt", "deepseek"} and all(s.overall == 9.0 and s.reviews == 3 for s in top)
    assert all(s.overall == 4.0 for s in result.standings[2:])
    chair_prompt = next(user_text(r.body) for r in standin.requests_for("claude")
                        if "You chair a council" in system_text(r.body))
    assert "overall 9.0" in chair_prompt and "gpt" not in chair_prompt.lower()
    kinds = [c.answer_kind for c in recorder.calls]
    assert kinds.count(REVIEW_KIND) == 4 and kinds.count("trading_decision") == 5


def test_bad_pitches_and_bad_reviews_are_recorded_rejections(standin: LLMStandIn) -> None:
    chair = decision_json(SYMBOL, "LONG", 0.75, entry=2.0)
    standin.script("claude", factory=member(decision_json(SYMBOL, "LONG", 0.7, entry=2.0),
                                            reviews_of(lambda line: 7), chair))
    standin.script("gpt", factory=member(decision_json(SYMBOL, "LONG", 0.8, entry=2.0), reviews_of(lambda line: 6)))
    # grok's pitch breaks the leverage limit; it still reviews the valid pitches.
    standin.script("grok", factory=member(INJECTION + decision_json(SYMBOL, "LONG", 0.99, entry=2.0, leverage=25),
                                          reviews_of(lambda line: 8)))
    # deepseek scores out of the rubric's range: its review counts for nothing.
    standin.script("deepseek", factory=member(decision_json(SYMBOL, "HOLD", 0.5), reviews_of(lambda line: 11)))
    recorder = MemoryRecorder()
    result = asyncio.run(_council(standin.url, recorder))

    assert {p.model for p in result.pitches} == {"claude", "gpt", "deepseek"}
    grok_pitch = next(r for r in result.pitch_round.results if r.model_name == "grok")
    assert grok_pitch.decision is None and grok_pitch.final.rejection is not None
    assert grok_pitch.final.rejection.reason is RejectionReason.OUT_OF_RANGE
    grok_review = next(t for t in result.reviews if t.reviewer == "grok")
    assert len(grok_review.labels) == 3 and grok_review.turn.answer is not None
    deepseek_review = next(t for t in result.reviews if t.reviewer == "deepseek")
    assert deepseek_review.turn.answer is None and "out_of_range" in deepseek_review.turn.why_not()
    rejected_reviews = [c for c in recorder.of_kind(REVIEW_KIND) if c.outcome is CallOutcome.REJECTED]
    assert {c.model_name for c in rejected_reviews} == {"deepseek"} and len(rejected_reviews) == 2
    # Scores of deepseek's rejected sheet never reach the standings.
    assert all(s.overall is not None and s.overall < 11 for s in result.standings)
    assert result.decision is not None and result.decision.action is Action.LONG


def test_an_injected_chairman_answer_leaves_the_council_without_a_decision(standin: LLMStandIn) -> None:
    bad_chair = INJECTION + decision_json(SYMBOL, "LONG", 0.99, entry=2.0, position_size_pct=100)
    for name in MEMBERS:
        standin.script(name, factory=member(decision_json(SYMBOL, "LONG", 0.7, entry=2.0),
                                            reviews_of(lambda line: 6), bad_chair if name == "claude" else None))
    recorder = MemoryRecorder()
    result = asyncio.run(_council(standin.url, recorder))
    assert result.decision is None and result.chairman is not None
    assert "gave no valid decision (out_of_range)" in result.reason
    chair_calls = [c for c in recorder.calls if c.request_id == "council-1:chair"]
    assert [c.outcome for c in chair_calls] == [CallOutcome.REJECTED] * 2


def test_no_valid_pitch_means_no_review_and_no_chairman(standin: LLMStandIn) -> None:
    for name in MEMBERS:
        standin.script(name, default=Reply(text='{"action": "LONG", "symbol": "XRP/USDT"'))
    result = asyncio.run(_council(standin.url, MemoryRecorder()))
    assert result.pitches == () and result.reviews == () and result.chairman is None
    assert result.decision is None and "no valid pitch from 4" in result.reason
    assert all(len(standin.requests_for(name)) == 2 for name in MEMBERS)  # ask + validation retry
