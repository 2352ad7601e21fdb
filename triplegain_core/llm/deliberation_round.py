"""One parallel deliberation round: every configured model on every symbol, then the vote.

Each model's valid decision becomes a :class:`PublishedDecision` for that model's own paper
account (``llm:<model>``), and a consensus decision one for ``llm:consensus``, so every model
and the consensus trade the same market side by side. A decision the executor must not trade
(HOLD, below the confidence floor) is kept with its refusal, never published. With no model
available the round says so and decides nothing: the system trades on its rules alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.decision_stream import (
    DEFAULT_DECISION_TTL_S,
    MIN_DECISION_CONFIDENCE,
    DeliberatedDecision,
    PublishedDecision,
)
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.models import FanOutResult, LLMAvailability, LLMStatus
from triplegain_core.llm.prompts import MarketContext, PromptStyle, build_prompt
from triplegain_core.llm.trading_decision import TradingDecision
from triplegain_core.llm.voting import CONSENSUS_MODEL, ConsensusResult, ConsensusRule, tally_fan_out
from triplegain_core.market import datetime_to_us

PARALLEL_MODE = "parallel"


def model_account(source: str) -> str:
    """The paper account that trades the decisions of ``source`` (a model or the consensus)."""
    return f"llm:{source}"


class RoundConfig(BaseModel):
    """How a round asks and decides.

    With ``require_human_approval`` a tradeable decision waits as pending until a person approves
    it (``triplegain decision approve``); it still expires at its market-time deadline.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    style: PromptStyle = PromptStyle.STANDARD
    consensus: ConsensusRule = ConsensusRule()
    decision_ttl_s: float = Field(default=DEFAULT_DECISION_TTL_S, gt=0.0)
    min_confidence: float = Field(default=MIN_DECISION_CONFIDENCE, ge=0.0, le=1.0)
    require_human_approval: bool = False


class SymbolRound(BaseModel):
    """What the models said about one symbol, the vote, and the decisions it produced."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    fan_out: FanOutResult
    consensus: ConsensusResult
    records: tuple[DeliberatedDecision, ...]


class RoundResult(BaseModel):
    """A whole round: which models could be asked, and each symbol's outcome."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    availability: LLMAvailability
    symbols: tuple[SymbolRound, ...]

    @property
    def status(self) -> LLMStatus:
        """Whether any model was available to this round."""
        return self.availability.status

    @property
    def records(self) -> list[DeliberatedDecision]:
        """Every decision of the round, tradeable or refused."""
        return [record for symbol in self.symbols for record in symbol.records]

    @property
    def tradeable(self) -> list[PublishedDecision]:
        """The decisions that may be handed to the executor (once approved)."""
        return [record.decision for record in self.records if record.tradeable]


def _record(request_id: str, source: str, decision: TradingDecision, market_time_us: int,
            config: RoundConfig) -> DeliberatedDecision:
    published = PublishedDecision.make(
        f"{request_id}:{decision.symbol}:{source}", model_account(source), source, decision,
        market_time_us, config.decision_ttl_s,
    )
    refusal = published.refusal(market_time_us, config.min_confidence)
    return DeliberatedDecision(request_id=request_id, mode=PARALLEL_MODE, decision=published,
                          refusal=None if refusal is None else refusal.value)


def symbol_records(request_id: str, fan_out: FanOutResult, consensus: ConsensusResult,
                   market_time_us: int, config: RoundConfig) -> tuple[DeliberatedDecision, ...]:
    """One record per model decision and one for a trading consensus, in configuration order."""
    records = [_record(request_id, name, decision, market_time_us, config)
               for name, decision in fan_out.decisions.items()]
    if consensus.decision is not None:
        records.append(_record(request_id, CONSENSUS_MODEL, consensus.decision, market_time_us, config))
    return tuple(records)


async def deliberate(
    client: LLMClient, contexts: Sequence[MarketContext], request_id: str,
    config: RoundConfig = RoundConfig(), weights: Mapping[str, float] | None = None,
) -> RoundResult:
    """Ask every available model about every context at once, then vote per symbol.

    ``weights`` (model -> weight, e.g. from the ModelSelector) weigh the votes; a model missing
    from it weighs 1.
    """
    availability = await client.availability()
    if availability.status is LLMStatus.NO_MODELS_CONFIGURED:
        return RoundResult(request_id=request_id, availability=availability, symbols=())
    budget = client.settings.prompt_token_budget

    async def one(context: MarketContext) -> SymbolRound:
        prompt = build_prompt(context, config.style, budget)
        fan_out = await client.fan_out(prompt, symbol=context.symbol, request_id=f"{request_id}:{context.symbol}")
        consensus = tally_fan_out(fan_out, config.consensus, weights)
        records = symbol_records(request_id, fan_out, consensus, datetime_to_us(context.time), config)
        return SymbolRound(symbol=context.symbol, fan_out=fan_out, consensus=consensus, records=records)

    rounds = await asyncio.gather(*(one(context) for context in contexts))
    return RoundResult(request_id=request_id, availability=availability, symbols=tuple(rounds))
