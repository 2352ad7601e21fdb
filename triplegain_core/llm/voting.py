"""Parallel mode: a confidence-weighted vote over the models' TradingDecisions.

Every model asked casts a :class:`Vote`: its validated decision, or an abstention (rejected or
failed answer). The winning action is the one with the largest weighted support (confidence x
model weight); it becomes the consensus only when enough of the models *asked* agree on it
(3 of 4 by default: an abstention counts against the consensus, never for it) and their weighted
confidence reaches the floor. Anything else is a no-trade HOLD with the reason. A LONG/SHORT
consensus merges the agreeing decisions into one TradingDecision, validated like any answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.deliberation_config import ConsensusRule
from triplegain_core.llm.models import FanOutResult, ModelResult
from triplegain_core.llm.prompts import Prompt
from triplegain_core.llm.trading_decision import Action, TradingDecision

CONSENSUS_MODEL = "consensus"
# Two actions whose weighted support differs by less than this are a tie: no side wins.
TIE_TOLERANCE = 1e-9


class Vote(BaseModel):
    """One model's ballot: its decision and weight, or an abstention with the reason."""

    model_config = ConfigDict(frozen=True)

    model: str
    weight: float = Field(ge=0.0)
    decision: TradingDecision | None = None
    abstained_because: str | None = None

    @model_validator(mode="after")
    def _ballot_or_reason(self) -> Vote:
        if (self.decision is None) == (self.abstained_because is None):
            raise ValueError("a vote carries a decision or the reason it abstained, not both")
        return self

    @property
    def action(self) -> Action | None:
        """The action voted for; None for an abstention."""
        return self.decision.action if self.decision is not None else None

    @property
    def support(self) -> float:
        """Confidence x weight: what this vote adds to its action."""
        return self.decision.confidence * self.weight if self.decision is not None else 0.0


class ConsensusStatus(StrEnum):
    """How a vote ended."""

    CONSENSUS = "consensus"
    NO_CONSENSUS = "no_consensus"


class NoTradeReason(StrEnum):
    """Why a vote produced no trade."""

    NO_VOTERS = "no_voters"
    NO_VALID_VOTES = "no_valid_votes"
    TIE = "tie"
    TOO_FEW_AGREE = "too_few_agree"
    LOW_CONFIDENCE = "low_confidence"
    HOLD_WINS = "hold_wins"


class ConsensusResult(BaseModel):
    """The outcome of one vote, with every ballot.

    ``decision`` is the merged TradingDecision (``model`` = "consensus") when the consensus is
    LONG, SHORT or CLOSE; None otherwise, with ``no_trade`` saying why. ``action`` is what to do:
    the consensus action, or HOLD.
    """

    model_config = ConfigDict(frozen=True)

    symbol: str
    status: ConsensusStatus
    action: Action
    decision: TradingDecision | None
    no_trade: NoTradeReason | None
    reason: str
    votes: tuple[Vote, ...]
    support: dict[Action, float]
    agreeing: int
    required: int
    confidence: float | None

    @property
    def trades(self) -> bool:
        """Whether the vote produced a decision that may go on to risk validation."""
        return self.decision is not None


def votes_from(results: Sequence[ModelResult], weights: Mapping[str, float] | None = None) -> tuple[Vote, ...]:
    """One vote per model result; a model missing from ``weights`` weighs 1."""
    votes = []
    for result in results:
        weight = 1.0 if weights is None else weights.get(result.model_name, 1.0)
        if result.decision is not None:
            votes.append(Vote(model=result.model_name, weight=weight, decision=result.decision))
            continue
        why = f"{result.outcome.value}: {result.why_no_answer}"
        votes.append(Vote(model=result.model_name, weight=weight, abstained_because=why))
    return tuple(votes)


def _weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float:
    total = sum(weights)
    if total <= 0:
        return sum(values) / len(values)
    return sum(v * w for v, w in zip(values, weights, strict=True)) / total


def merge_decisions(symbol: str, agreeing: Sequence[Vote]) -> TradingDecision:
    """The agreeing decisions merged into one, validated as a TradingDecision.

    Confidence, size and levels are support-weighted means (a positive-weighted mean of ordered
    stop/entry/take-profit triples keeps their order); leverage is the lowest proposed, because
    the agreement is only as strong as its most cautious member on risk.
    """
    decisions = [vote.decision for vote in agreeing if vote.decision is not None]
    weights = [vote.weight for vote in agreeing]
    action = decisions[0].action
    levels: dict[str, float | None] = {"entry": None, "stop_loss": None, "take_profit": None}
    if action in (Action.LONG, Action.SHORT):
        for name in levels:
            levels[name] = _weighted_mean([getattr(d, name) for d in decisions], weights)
    models = ", ".join(vote.model for vote in agreeing)
    return TradingDecision.model_validate({
        "action": action,
        "symbol": symbol,
        "confidence": _weighted_mean([d.confidence for d in decisions], weights),
        "position_size_pct": _weighted_mean([d.position_size_pct for d in decisions], weights),
        "leverage": min(d.leverage for d in decisions),
        **levels,
        "invalidation": decisions[0].invalidation if len(decisions) == 1
        else "; ".join(dict.fromkeys(d.invalidation for d in decisions))[:500],
        "reasoning": f"consensus of {models}"[:1000],
        "model": CONSENSUS_MODEL,
    })


def tally(symbol: str, votes: Sequence[Vote], rule: ConsensusRule = ConsensusRule()) -> ConsensusResult:
    """Count ``votes`` under ``rule``: the consensus decision, or HOLD with the reason."""
    required = rule.required(len(votes))
    support: dict[Action, float] = {}
    for vote in votes:
        if vote.action is not None:
            support[vote.action] = support.get(vote.action, 0.0) + vote.support

    def no_trade(why: NoTradeReason, reason: str, agreeing: int = 0,
                 confidence: float | None = None) -> ConsensusResult:
        return ConsensusResult(
            symbol=symbol, status=ConsensusStatus.NO_CONSENSUS, action=Action.HOLD, decision=None,
            no_trade=why, reason=reason, votes=tuple(votes), support=support, agreeing=agreeing,
            required=required, confidence=confidence,
        )

    if not votes:
        return no_trade(NoTradeReason.NO_VOTERS, "no model was asked")
    if not support:
        return no_trade(NoTradeReason.NO_VALID_VOTES, f"none of {len(votes)} models gave a valid decision")
    ranked = sorted(support.items(), key=lambda item: -item[1])
    winner, best = ranked[0]
    if len(ranked) > 1 and best - ranked[1][1] <= TIE_TOLERANCE:
        tied = sorted(action.value for action, value in ranked if best - value <= TIE_TOLERANCE)
        return no_trade(NoTradeReason.TIE, f"weighted support tied between {', '.join(tied)}")
    agreeing = [vote for vote in votes if vote.action is winner]
    confidence = _weighted_mean([v.decision.confidence for v in agreeing if v.decision],
                                [v.weight for v in agreeing])
    if len(agreeing) < required:
        return no_trade(NoTradeReason.TOO_FEW_AGREE,
                        f"{len(agreeing)} of {len(votes)} models for {winner.value}, {required} needed",
                        len(agreeing), confidence)
    if winner is Action.HOLD:
        return ConsensusResult(
            symbol=symbol, status=ConsensusStatus.CONSENSUS, action=Action.HOLD, decision=None,
            no_trade=NoTradeReason.HOLD_WINS, reason=f"{len(agreeing)} of {len(votes)} models hold",
            votes=tuple(votes), support=support, agreeing=len(agreeing), required=required,
            confidence=confidence,
        )
    if confidence < rule.min_confidence:
        return no_trade(NoTradeReason.LOW_CONFIDENCE,
                        f"{winner.value} agreed at confidence {confidence:.2f} < {rule.min_confidence:.2f}",
                        len(agreeing), confidence)
    decision = merge_decisions(symbol, agreeing)
    return ConsensusResult(
        symbol=symbol, status=ConsensusStatus.CONSENSUS, action=winner, decision=decision,
        no_trade=None, reason=f"{len(agreeing)} of {len(votes)} models for {winner.value}",
        votes=tuple(votes), support=support, agreeing=len(agreeing), required=required,
        confidence=confidence,
    )


def tally_fan_out(fan_out: FanOutResult, rule: ConsensusRule = ConsensusRule(),
                  weights: Mapping[str, float] | None = None) -> ConsensusResult:
    """The vote over a fan-out's results; with no model configured, a NO_VOTERS HOLD."""
    return tally(fan_out.symbol, votes_from(fan_out.results, weights), rule)


class ParallelRound(BaseModel):
    """One parallel round: the fan-out (every call) and the vote over it."""

    model_config = ConfigDict(frozen=True)

    fan_out: FanOutResult
    consensus: ConsensusResult


async def parallel_round(client: LLMClient, prompt: Prompt, *, symbol: str, request_id: str,
                         rule: ConsensusRule = ConsensusRule(),
                         weights: Mapping[str, float] | None = None) -> ParallelRound:
    """Ask every available model at once and vote (``weights`` from a ModelSelector's Selection)."""
    fan_out = await client.fan_out(prompt, symbol=symbol, request_id=request_id)
    return ParallelRound(fan_out=fan_out, consensus=tally_fan_out(fan_out, rule, weights))
