"""One deliberation round on every symbol, in the configured mode.

- parallel: every available model at once, then the confidence-weighted vote. Each model's valid
  decision becomes a :class:`PublishedDecision` for that model's own paper account
  (``llm:<model>``), and a consensus decision one for ``llm:consensus``, so every model and the
  consensus trade the same market side by side.
- debate: a bull and a bear researcher argue, a portfolio manager decides (``llm:debate``).
- council: every model pitches, the others review the pitches anonymously, a chairman decides
  (``llm:council``).

Unconfigured roles go to the available models in configuration order, the ModelSelector's
primary model taking the deciding role (manager, chairman). A decision the executor must not
trade (HOLD, below the confidence floor) is kept with its refusal, never published. With no
model available the round says so and decides nothing: the system trades on its rules alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from triplegain_core.decisions.published import DeliberatedDecision, PublishedDecision, model_account
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.council import CouncilResult, run_council
from triplegain_core.llm.debate import DebateResult, run_debate
from triplegain_core.llm.deliberation_config import (
    CouncilConfig,
    DebateConfig,
    DeliberationMode,
    RoundConfig,
)
from triplegain_core.llm.models import FanOutResult, LLMAvailability, LLMStatus
from triplegain_core.llm.prompts import MarketContext, build_prompt
from triplegain_core.llm.trading_decision import TradingDecision
from triplegain_core.llm.voting import CONSENSUS_MODEL, ConsensusResult, parallel_round
from triplegain_core.model.market import datetime_to_us


class SymbolRound(BaseModel):
    """What the models said about one symbol, the vote, and the decisions it produced."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    fan_out: FanOutResult
    consensus: ConsensusResult
    records: tuple[DeliberatedDecision, ...]


class PanelRound(BaseModel):
    """A debate or a council on one symbol: one decision (or why none), for its own account."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    mode: DeliberationMode
    roles: dict[str, str]
    decision: TradingDecision | None
    reason: str
    records: tuple[DeliberatedDecision, ...]


class RoundResult(BaseModel):
    """A whole round: which models could be asked, and each symbol's outcome."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    availability: LLMAvailability
    mode: DeliberationMode = DeliberationMode.PARALLEL
    symbols: tuple[SymbolRound, ...] = ()
    panels: tuple[PanelRound, ...] = ()

    @property
    def status(self) -> LLMStatus:
        """Whether any model was available to this round."""
        return self.availability.status

    @property
    def records(self) -> list[DeliberatedDecision]:
        """Every decision of the round, tradeable or refused."""
        return ([record for symbol in self.symbols for record in symbol.records]
                + [record for panel in self.panels for record in panel.records])

    @property
    def tradeable(self) -> list[PublishedDecision]:
        """The decisions that may be handed to the executor (once approved)."""
        return [record.decision for record in self.records if record.tradeable]


def _record(request_id: str, source: str, decision: TradingDecision, market_time_us: int,
            config: RoundConfig, mode: DeliberationMode = DeliberationMode.PARALLEL) -> DeliberatedDecision:
    published = PublishedDecision.make(
        f"{request_id}:{decision.symbol}:{source}", model_account(source), source, decision,
        market_time_us, config.decision_ttl_s,
    )
    refusal = published.refusal(market_time_us, config.min_confidence)
    return DeliberatedDecision(request_id=request_id, mode=mode.value, decision=published,
                          refusal=None if refusal is None else refusal.value)


def symbol_records(request_id: str, fan_out: FanOutResult, consensus: ConsensusResult,
                   market_time_us: int, config: RoundConfig) -> tuple[DeliberatedDecision, ...]:
    """One record per model decision and one for a trading consensus, in configuration order."""
    records = [_record(request_id, name, decision, market_time_us, config)
               for name, decision in fan_out.decisions.items()]
    if consensus.decision is not None:
        records.append(_record(request_id, CONSENSUS_MODEL, consensus.decision, market_time_us, config))
    return tuple(records)


def _roles(available: Sequence[str], primary: str | None) -> tuple[str, list[str]]:
    """The deciding model (the primary when available) and the others, in configuration order."""
    decider = primary if primary is not None and primary in available else available[0]
    return decider, [name for name in available if name != decider] or [decider]


def debate_roles(config: RoundConfig, available: Sequence[str], primary: str | None) -> DebateConfig:
    """The configured debate, or one cast from the available models."""
    if config.debate is not None:
        return config.debate
    manager, others = _roles(available, primary)
    return DebateConfig(bull_model=others[0], bear_model=others[1 % len(others)], manager_model=manager,
                        style=config.style)


def council_roles(config: RoundConfig, available: Sequence[str], primary: str | None) -> CouncilConfig:
    """The configured council, or every available model chaired by the primary."""
    if config.council is not None:
        return config.council
    chairman, _ = _roles(available, primary)
    return CouncilConfig(chairman=chairman, style=config.style)


async def _panel(client: LLMClient, context: MarketContext, request_id: str, config: RoundConfig,
                 primary: str | None) -> PanelRound:
    available = (await client.availability()).available
    symbol_request = f"{request_id}:{context.symbol}"
    if config.mode is DeliberationMode.DEBATE:
        debate = debate_roles(config, available, primary)
        roles = {"bull": debate.bull_model, "bear": debate.bear_model, "manager": debate.manager_model}
        outcome: DebateResult | CouncilResult = await run_debate(client, context, debate, request_id=symbol_request)
    else:
        council = council_roles(config, available, primary)
        roles = {"chairman": council.chairman, "members": ", ".join(council.members or available)}
        outcome = await run_council(client, context, council, request_id=symbol_request)
    records: tuple[DeliberatedDecision, ...] = ()
    if outcome.decision is not None:
        records = (_record(request_id, config.mode.value, outcome.decision, datetime_to_us(context.time),
                           config, config.mode),)
    return PanelRound(symbol=context.symbol, mode=config.mode, roles=roles, decision=outcome.decision,
                      reason=outcome.reason, records=records)


async def deliberate(
    client: LLMClient, contexts: Sequence[MarketContext], request_id: str,
    config: RoundConfig = RoundConfig(), weights: Mapping[str, float] | None = None,
    primary: str | None = None,
) -> RoundResult:
    """Deliberate on every context at once in ``config.mode``.

    ``weights`` (model -> weight, from the ModelSelector) weigh the parallel votes, a model
    missing from it weighing 1; ``primary`` (the selector's primary model) takes the deciding
    role of a debate or a council unless the configuration names one.
    """
    availability = await client.availability()
    if availability.status is LLMStatus.NO_MODELS_CONFIGURED:
        return RoundResult(request_id=request_id, availability=availability, mode=config.mode)
    if config.mode is not DeliberationMode.PARALLEL:
        panels = await asyncio.gather(*(_panel(client, c, request_id, config, primary) for c in contexts))
        return RoundResult(request_id=request_id, availability=availability, mode=config.mode, panels=tuple(panels))
    budget = client.settings.prompt_token_budget

    async def one(context: MarketContext) -> SymbolRound:
        voted = await parallel_round(client, build_prompt(context, config.style, budget), symbol=context.symbol,
                                     request_id=f"{request_id}:{context.symbol}", rule=config.consensus,
                                     weights=weights)
        records = symbol_records(request_id, voted.fan_out, voted.consensus, datetime_to_us(context.time), config)
        return SymbolRound(symbol=context.symbol, fan_out=voted.fan_out, consensus=voted.consensus, records=records)

    rounds = await asyncio.gather(*(one(context) for context in contexts))
    return RoundResult(request_id=request_id, availability=availability, mode=config.mode, symbols=tuple(rounds))
