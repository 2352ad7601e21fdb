"""What a checkpoint's verdicts ask of the executor, as decisions for the position's own account.

EXIT becomes a CLOSE decision; FLIP a CLOSE and then the opposite entry (which faces the
RiskAgent like any entry); STAY asks nothing. REDUCE is kept as a verdict but sends no order:
the paper executor closes whole positions only, and closing all of one for a REDUCE would do
more than the model asked.
"""

from __future__ import annotations

from collections.abc import Sequence

from triplegain_core.decisions.published import (
    LLM_ACCOUNT_PREFIX,
    MIN_DECISION_CONFIDENCE,
    DeliberatedDecision,
    PublishedDecision,
)
from triplegain_core.llm.checkpoints import CheckpointAction, CheckpointVerdict
from triplegain_core.llm.trading_decision import Action, TradingDecision

CHECKPOINT_MODE = "checkpoint"


def _close(verdict: CheckpointVerdict) -> TradingDecision:
    return TradingDecision(
        action=Action.CLOSE, symbol=verdict.symbol, confidence=verdict.confidence or 0.0, position_size_pct=0.0,
        leverage=1.0, entry=None, stop_loss=None, take_profit=None,
        invalidation=f"checkpoint {verdict.action.value} of {verdict.position_id}",
        reasoning=verdict.reasoning or verdict.action.value, model=verdict.model,
    )


def checkpoint_decisions(verdicts: Sequence[CheckpointVerdict], account: str, market_time_us: int,
                         request_id: str, ttl_s: float,
                         min_confidence: float = MIN_DECISION_CONFIDENCE) -> tuple[DeliberatedDecision, ...]:
    """The decisions ``verdicts`` (of ``account``'s positions) send to the executor, in order;
    a flip's entry below ``min_confidence`` is kept refused, like any round's decision."""
    source = account.removeprefix(LLM_ACCOUNT_PREFIX)
    decisions: list[DeliberatedDecision] = []
    for verdict in verdicts:
        steps: list[tuple[str, TradingDecision]] = []
        if verdict.action in (CheckpointAction.EXIT, CheckpointAction.FLIP):
            steps.append(("close", _close(verdict)))
        if verdict.action is CheckpointAction.FLIP and verdict.flip_decision is not None:
            steps.append(("flip", verdict.flip_decision))
        for suffix, decision in steps:
            published = PublishedDecision.make(f"{request_id}:{verdict.position_id}:{suffix}", account, source,
                                               decision, market_time_us, ttl_s)
            refusal = published.refusal(market_time_us, min_confidence)
            decisions.append(DeliberatedDecision(request_id=request_id, mode=CHECKPOINT_MODE, decision=published,
                                                 refusal=None if refusal is None else refusal.value))
    return tuple(decisions)
