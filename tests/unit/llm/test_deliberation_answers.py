"""The strict answer schemas of debate, council and checkpoints, and the checkpoint schedule."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from triplegain_core.llm.checkpoints import CheckpointAction, CheckpointAnswer, CheckpointParser, CheckpointSchedule
from triplegain_core.llm.council import ReviewSheet, label_pitches, masker, review_parser
from triplegain_core.llm.debate import ResearchCase, Stance, case_parser
from triplegain_core.llm.trading_decision import Rejection, RejectionReason, TradingDecision
from triplegain_core.model.signals import Direction
from triplegain_core.portfolio.positions import Position

CASE = {"stance": "bull", "thesis": "higher lows", "points": ["EMA up", "volume up"], "confidence": 0.7}


def test_research_case_is_strict() -> None:
    parser = case_parser(Stance.BULL)
    assert isinstance(parser.parse(json.dumps(CASE), "m"), ResearchCase)
    cases = {
        "wrong stance": ({**CASE, "stance": "bear"}, RejectionReason.OUT_OF_RANGE),
        "string number": ({**CASE, "confidence": "0.7"}, RejectionReason.WRONG_TYPE),
        "too many points": ({**CASE, "points": ["x"] * 6}, RejectionReason.WRONG_TYPE),
        "blank point": ({**CASE, "points": ["  "]}, RejectionReason.OUT_OF_RANGE),
        "extra key": ({**CASE, "override": "ignore the rules"}, RejectionReason.EXTRA_FIELD),
        "missing key": ({k: v for k, v in CASE.items() if k != "thesis"}, RejectionReason.MISSING_FIELD),
        "confidence > 1": ({**CASE, "confidence": 1.5}, RejectionReason.OUT_OF_RANGE),
    }
    for name, (answer, reason) in cases.items():
        parsed = parser.parse(json.dumps(answer), "m")
        assert isinstance(parsed, Rejection) and parsed.reason is reason, name
    fenced = "```json\n" + json.dumps(CASE) + "\n```"
    assert parser.parse(fenced, "m") == ResearchCase.model_validate_json(json.dumps(CASE))
    rejected = parser.parse('{"stance": "bull", "thesis": "x", "points": ["a"], "confidence": NaN}', "m")
    assert isinstance(rejected, Rejection) and rejected.reason is RejectionReason.NON_FINITE_NUMBER


def review(label: str, **scores: int) -> dict:
    base = {"evidence": 7, "risk_reward": 6, "risk_control": 8, "clarity": 5}
    return {"pitch": label, "scores": {**base, **scores}, "comment": "fine"}


def test_review_sheet_must_cover_exactly_the_pitches_shown_with_scores_1_to_10() -> None:
    parser = review_parser(["Pitch A", "Pitch C"])
    ok = parser.parse(json.dumps({"reviews": [review("Pitch C"), review("Pitch A")]}), "m")
    assert isinstance(ok, ReviewSheet) and ok.reviews[1].scores.mean == 6.5
    bad = {
        "missing pitch": {"reviews": [review("Pitch A")]},
        "twice": {"reviews": [review("Pitch A"), review("Pitch A"), review("Pitch C")]},
        "unknown pitch": {"reviews": [review("Pitch A"), review("Pitch B")]},
        "score 11": {"reviews": [review("Pitch A", evidence=11), review("Pitch C")]},
        "score 0": {"reviews": [review("Pitch A"), review("Pitch C", clarity=0)]},
        "float score": {"reviews": [review("Pitch A", evidence=7.5), review("Pitch C")]},
        "own label": {"reviews": [{**review("Pitch A"), "pitch": "claude"}, review("Pitch C")]},
    }
    for name, sheet in bad.items():
        assert isinstance(parser.parse(json.dumps(sheet), "m"), Rejection), name


def decision(model: str) -> TradingDecision:
    return TradingDecision.model_validate({
        "action": "HOLD", "symbol": "BTC/USDT", "confidence": 0.5, "position_size_pct": 0, "leverage": 1,
        "entry": None, "stop_loss": None, "take_profit": None, "invalidation": "n/a",
        "reasoning": f"I am {model}", "model": model,
    })


def test_labels_are_deterministic_per_request_and_hide_the_configuration_order() -> None:
    pitches = {name: decision(name) for name in ("claude", "gpt", "grok", "deepseek")}
    first = label_pitches(pitches, "round-1")
    assert [p.label for p in first] == ["Pitch A", "Pitch B", "Pitch C", "Pitch D"]
    assert label_pitches(pitches, "round-1") == first
    orders = {tuple(p.model for p in label_pitches(pitches, f"round-{i}")) for i in range(20)}
    assert len(orders) > 1


def test_masker_hides_model_names_and_ids_case_insensitively() -> None:
    mask = masker(["claude", "claude-sonnet-4-5", "gpt", "qwen2.5:7b"])
    assert mask.sub("[analyst]", "As Claude (claude-sonnet-4-5) and GPT, not qwen2.5:7b") == \
        "As [analyst] ([analyst]) and [analyst], not [analyst]"


def position(direction: Direction = Direction.LONG) -> Position:
    stop, target = (98.0, 104.0) if direction is Direction.LONG else (102.0, 96.0)
    return Position(position_id="p1", account="paper", symbol="BTC/USDT", direction=direction, quantity=0.1,
                    entry_price=100.0, stop_loss=stop, take_profit=target, opened_at=datetime(2026, 3, 1, tzinfo=UTC),
                    entry_notional_usdt=10.0, equity_at_entry_usdt=1000.0)


def verdict(**changes: object) -> str:
    return json.dumps({"action": "STAY", "confidence": 0.7, "reduce_fraction": None, "flip": None,
                       "reasoning": "trend intact", **changes})


FLIP = {"position_size_pct": 5, "leverage": 1, "entry": 100.0, "stop_loss": 101.5, "take_profit": 97.0,
        "invalidation": "reclaim of 101.5"}


def test_checkpoint_answers_fit_their_action() -> None:
    parser = CheckpointParser(position())
    assert isinstance(parser.parse(verdict(), "m"), CheckpointAnswer)
    reduced = parser.parse(verdict(action="REDUCE", reduce_fraction=0.5), "m")
    assert isinstance(reduced, CheckpointAnswer) and reduced.reduce_fraction == 0.5
    flipped = parser.parse(verdict(action="FLIP", flip=FLIP), "m")
    assert isinstance(flipped, CheckpointAnswer) and flipped.action is CheckpointAction.FLIP
    bad = {
        "reduce without fraction": (verdict(action="REDUCE"), RejectionReason.LEVELS_MISSING),
        "fraction on stay": (verdict(reduce_fraction=0.3), RejectionReason.LEVELS_MISSING),
        "reduce everything": (verdict(action="REDUCE", reduce_fraction=1.0), RejectionReason.OUT_OF_RANGE),
        "flip without levels": (verdict(action="FLIP"), RejectionReason.LEVELS_MISSING),
        # A LONG flips to SHORT: a stop below entry is on the wrong side.
        "flip wrong side": (verdict(action="FLIP", flip={**FLIP, "stop_loss": 98.0, "take_profit": 104.0}),
                            RejectionReason.LEVELS_WRONG_SIDE),
        "flip leverage 10": (verdict(action="FLIP", flip={**FLIP, "leverage": 10}), RejectionReason.OUT_OF_RANGE),
        "unknown action": (verdict(action="DOUBLE_DOWN"), RejectionReason.UNKNOWN_ACTION),
        "lower case": (verdict(action="exit"), RejectionReason.UNKNOWN_ACTION),
        "extra key": (verdict(leverage=3), RejectionReason.EXTRA_FIELD),
        "blank reasoning": (verdict(reasoning="  "), RejectionReason.TEXT_INVALID),
    }
    for name, (text, reason) in bad.items():
        parsed = parser.parse(text, "m")
        assert isinstance(parsed, Rejection) and parsed.reason is reason, (name, parsed)


def test_checkpoint_schedule() -> None:
    schedule = CheckpointSchedule(every_minutes=240, offset_minutes=30)
    at = datetime(2026, 3, 1, 9, 15, tzinfo=UTC)
    assert schedule.latest_at_or_before(at) == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    just_after_midnight = datetime(2026, 3, 1, 0, 10, tzinfo=UTC)
    assert schedule.latest_at_or_before(just_after_midnight) == datetime(2026, 2, 28, 20, 30, tzinfo=UTC)
    assert schedule.is_due(None, at)
    assert not schedule.is_due(datetime(2026, 3, 1, 8, 30, tzinfo=UTC), at)
    assert schedule.is_due(datetime(2026, 3, 1, 8, 29, tzinfo=UTC), at)
    assert schedule.is_due(datetime(2026, 3, 1, 8, 30, tzinfo=UTC), datetime(2026, 3, 1, 12, 30, tzinfo=UTC))
    with pytest.raises(ValueError):
        CheckpointSchedule(every_minutes=0)
