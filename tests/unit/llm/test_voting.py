"""Confidence-weighted voting with a consensus threshold, and the ModelSelector's hysteresis."""

from __future__ import annotations

import pytest

from triplegain_core.llm.deliberation_config import ConsensusRule
from triplegain_core.llm.model_selector import ModelScore, ModelSelector, SelectorConfig, composite, select
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.llm.voting import (
    CONSENSUS_MODEL,
    ConsensusStatus,
    NoTradeReason,
    Vote,
    tally,
)

SYMBOL = "BTC/USDT"


def decision(model: str, action: str = "LONG", confidence: float = 0.8, size: float = 10.0,
             leverage: float = 2.0, entry: float = 100.0) -> TradingDecision:
    levels: dict[str, float | None] = {"entry": None, "stop_loss": None, "take_profit": None}
    if action == "LONG":
        levels = {"entry": entry, "stop_loss": entry * 0.98, "take_profit": entry * 1.04}
    elif action == "SHORT":
        levels = {"entry": entry, "stop_loss": entry * 1.02, "take_profit": entry * 0.96}
    return TradingDecision.model_validate({
        "action": action, "symbol": SYMBOL, "confidence": confidence, "position_size_pct": size,
        "leverage": leverage, **levels, "invalidation": f"{model} thesis breaks",
        "reasoning": f"{model} view", "model": model,
    })


def vote(model: str, weight: float = 1.0, **kwargs: object) -> Vote:
    return Vote(model=model, weight=weight, decision=decision(model, **kwargs))


def abstain(model: str) -> Vote:
    return Vote(model=model, weight=1.0, abstained_because="rejected: out_of_range")


def test_three_of_four_agreeing_make_a_consensus_that_records_every_vote() -> None:
    votes = [vote("a", confidence=0.9, entry=100.0, size=10, leverage=2),
             vote("b", confidence=0.6, entry=110.0, size=20, leverage=1),
             vote("c", confidence=0.9, entry=100.0, size=10, leverage=3),
             vote("d", action="SHORT", confidence=0.9)]
    result = tally(SYMBOL, votes)

    assert result.status is ConsensusStatus.CONSENSUS and result.action is Action.LONG
    assert (result.agreeing, result.required) == (3, 3)
    assert [v.model for v in result.votes] == ["a", "b", "c", "d"]
    merged = result.decision
    assert merged is not None and merged.model == CONSENSUS_MODEL
    # Weights are 1: plain means of the three LONGs; leverage is the most cautious one.
    assert merged.confidence == pytest.approx(0.8)
    assert merged.entry == pytest.approx(310.0 / 3)
    assert merged.position_size_pct == pytest.approx(40.0 / 3)
    assert merged.leverage == 1.0
    assert merged.stop_loss < merged.entry < merged.take_profit
    assert result.support[Action.LONG] == pytest.approx(2.4)
    assert result.support[Action.SHORT] == pytest.approx(0.9)


def test_two_of_four_is_no_consensus_and_an_abstention_counts_against() -> None:
    result = tally(SYMBOL, [vote("a"), vote("b"), vote("c", action="HOLD"), abstain("d")])
    assert result.status is ConsensusStatus.NO_CONSENSUS and result.action is Action.HOLD
    assert result.decision is None and result.no_trade is NoTradeReason.TOO_FEW_AGREE
    assert "2 of 4" in result.reason and result.required == 3

    # Three valid LONGs but a fourth model failed: still 3 of 4, a consensus.
    assert tally(SYMBOL, [vote("a"), vote("b"), vote("c"), abstain("d")]).trades


def test_threshold_as_count_or_fraction_the_stricter_applies() -> None:
    votes = [vote("a"), vote("b"), vote("c", action="SHORT"), vote("d", action="SHORT", confidence=0.1)]
    assert tally(SYMBOL, votes, ConsensusRule(min_agreeing=2, min_fraction=None)).trades
    assert not tally(SYMBOL, votes, ConsensusRule(min_agreeing=2, min_fraction=0.75)).trades
    assert ConsensusRule(min_fraction=0.75).required(4) == 3
    assert ConsensusRule(min_fraction=0.75).required(5) == 4
    assert ConsensusRule(min_fraction=0.5, min_agreeing=4).required(4) == 4
    with pytest.raises(ValueError):
        ConsensusRule(min_agreeing=None, min_fraction=None)


def test_the_weighted_winner_is_not_the_head_count() -> None:
    # Two light LONGs against one heavy, confident SHORT: SHORT has more support.
    votes = [vote("a", weight=0.2, confidence=0.7), vote("b", weight=0.2, confidence=0.7),
             vote("c", weight=1.0, action="SHORT", confidence=0.9)]
    result = tally(SYMBOL, votes, ConsensusRule(min_agreeing=1, min_fraction=None))
    assert result.action is Action.SHORT and result.decision is not None
    assert result.decision.take_profit < result.decision.entry < result.decision.stop_loss


def test_tie_no_valid_votes_no_voters_low_confidence_and_hold() -> None:
    tie = tally(SYMBOL, [vote("a", confidence=0.8), vote("b", action="SHORT", confidence=0.8)],
                ConsensusRule(min_agreeing=1, min_fraction=None))
    assert tie.no_trade is NoTradeReason.TIE and tie.action is Action.HOLD

    assert tally(SYMBOL, [abstain("a"), abstain("b")]).no_trade is NoTradeReason.NO_VALID_VOTES
    assert tally(SYMBOL, []).no_trade is NoTradeReason.NO_VOTERS

    timid = tally(SYMBOL, [vote(m, confidence=0.5) for m in "abcd"])
    assert timid.no_trade is NoTradeReason.LOW_CONFIDENCE and timid.decision is None
    assert timid.confidence == pytest.approx(0.5)

    hold = tally(SYMBOL, [vote(m, action="HOLD") for m in "abc"] + [vote("d")])
    assert hold.status is ConsensusStatus.CONSENSUS and hold.action is Action.HOLD
    assert hold.no_trade is NoTradeReason.HOLD_WINS and not hold.trades


def test_close_consensus_has_no_levels() -> None:
    result = tally(SYMBOL, [vote(m, action="CLOSE", confidence=0.7) for m in "abcd"])
    assert result.action is Action.CLOSE and result.decision is not None
    assert result.decision.entry is None and result.decision.stop_loss is None


def test_a_vote_is_a_decision_or_an_abstention() -> None:
    with pytest.raises(ValueError):
        Vote(model="a", weight=1.0)
    with pytest.raises(ValueError):
        Vote(model="a", weight=1.0, decision=decision("a"), abstained_because="x")


# ModelSelector -------------------------------------------------------------------------------

def score(model: str, return_pct: float = 0.0, brier: float = 0.25, hit_rate: float = 0.5,
          decisions: int = 50) -> ModelScore:
    return ModelScore(model=model, return_pct=return_pct, brier=brier, hit_rate=hit_rate, decisions=decisions)


def test_composite_by_hand() -> None:
    # 0.4 * (0.5 + 5/20) + 0.3 * (1 - 0.2) + 0.3 * 0.6 = 0.3 + 0.24 + 0.18
    assert composite(score("a", return_pct=5.0, brier=0.2, hit_rate=0.6)) == pytest.approx(0.72)
    # The return term is clamped at +-scale.
    assert composite(score("a", return_pct=-50.0, brier=1.0, hit_rate=0.0)) == 0.0


def test_selector_switches_only_when_the_challenger_leads_by_more_than_the_margin() -> None:
    config = SelectorConfig(switch_margin=0.05)
    selector = ModelSelector(["a", "b"], config)
    first = selector.update([score("a", return_pct=2.0), score("b", return_pct=1.0)])
    assert first.primary == "a" and first.switched

    # Each return point is worth 0.4 / (2 * 10) = 0.02 of composite: b leads by 0.02 <= 0.05.
    close = selector.update([score("a", return_pct=2.0), score("b", return_pct=3.0)])
    lead = composite(score("b", return_pct=3.0)) - composite(score("a", return_pct=2.0))
    assert lead == pytest.approx(0.02)
    assert close.primary == "a" and not close.switched and "kept" in close.reason

    beaten = selector.update([score("a", return_pct=2.0), score("b", return_pct=5.0)])
    assert beaten.primary == "b" and beaten.switched and beaten.previous == "a"
    assert selector.primary == "b"

    # Back within the margin of a: b stays (hysteresis both ways).
    back = selector.update([score("a", return_pct=6.5), score("b", return_pct=5.0)])
    assert back.primary == "b" and not back.switched


def test_unscored_models_keep_a_neutral_weight_and_cannot_take_over() -> None:
    config = SelectorConfig(min_decisions=20, neutral_weight=0.5)
    selection = select(["a", "b"], [score("a", return_pct=1.0), score("b", return_pct=9.0, decisions=3)],
                       incumbent="a", config=config)
    assert selection.primary == "a" and not selection.switched
    weights = selection.weight_of()
    assert weights["b"] == 0.5 and weights["a"] == pytest.approx(composite(score("a", return_pct=1.0)))

    nothing = select(["a", "b"], [], incumbent=None, config=config)
    assert nothing.primary == "a" and all(not w.scored for w in nothing.weights)

    # An incumbent that is no longer eligible is replaced at once, whatever the margin.
    replaced = select(["a", "b"], [score("a", decisions=1), score("b")], incumbent="a", config=config)
    assert replaced.primary == "b" and replaced.switched


def test_weights_feed_the_vote() -> None:
    selection = select(["a", "b", "c"], [score("a", hit_rate=1.0, brier=0.0, return_pct=10.0),
                                         score("b", hit_rate=0.0, brier=1.0, return_pct=-10.0),
                                         score("c", hit_rate=0.0, brier=1.0, return_pct=-10.0)],
                       incumbent=None, config=SelectorConfig(min_weight=0.05))
    weights = selection.weight_of()
    assert weights == {"a": 1.0, "b": 0.05, "c": 0.05}
    votes = [Vote(model="a", weight=weights["a"], decision=decision("a", action="SHORT", confidence=0.7)),
             Vote(model="b", weight=weights["b"], decision=decision("b", confidence=0.9)),
             Vote(model="c", weight=weights["c"], decision=decision("c", confidence=0.9))]
    result = tally(SYMBOL, votes, ConsensusRule(min_agreeing=1, min_fraction=None))
    assert result.action is Action.SHORT
