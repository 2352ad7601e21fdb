"""The ``llm_deliberation`` asset: a round of the configured models, handed to the executor.

Runs hourly (``deliberation_schedule``) and when the executor publishes a strong technical signal
(``strong_signal_sensor``). Each valid decision goes on the Redis decision stream for its own
paper account, with an expiry in market time; every call and every decision is stored. With no
model configured it says so, decides nothing, and the executor trades on its rules alone.
"""

import asyncio
import uuid

import dagster as dg
from pydantic import Field

from triplegain_core.config import Settings
from triplegain_core.contracts.decision_streams import DecisionStream
from triplegain_core.decisions.handover import decisions_table, hand_over
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.decisions.published import model_account
from triplegain_core.llm.deliberation_config import DeliberationMode
from triplegain_core.llm.deliberation_round import RoundResult, deliberate
from triplegain_core.llm.models import LLMStatus
from triplegain_core.llm.prompts import MarketContext
from triplegain_core.llm.voting import CONSENSUS_MODEL
from triplegain_core.reporting.reports import markdown_table
from triplegain_core.storage.decision_ledger import DecisionLedger
from triplegain_core.storage.llm_store import recorded_client
from triplegain_core.storage.market_context import market_contexts
from triplegain_core.storage.model_scores import latest_primary, latest_weights
from triplegain_dagster import groups
from triplegain_dagster.defs.market_data.candles import candles_1m
from triplegain_dagster.resources import LLMResource, PostgresResource, RedisResource


async def _round(settings: Settings, llm: LLMResource, database_url: str, redis_url: str,
                 contexts: list[MarketContext], request_id: str, weights: dict[str, float],
                 primary: str | None) -> RoundResult:
    async with recorded_client(settings.llm, database_url, redis_url, llm.mode(), llm.rate_limit_wait_s) as client:
        return await deliberate(client, contexts, request_id, settings.deliberation, weights, primary)


def _panels_table(result: RoundResult) -> str:
    rows = [[panel.symbol, ", ".join(f"{role}: {model}" for role, model in panel.roles.items()),
             panel.decision.action.value if panel.decision else "none", panel.reason]
            for panel in result.panels]
    return markdown_table(["symbol", "roles", "decision", "why"], rows)


def _votes_table(result: RoundResult) -> str:
    rows = []
    for symbol_round in result.symbols:
        for model_result in symbol_round.fan_out.results:
            decision = model_result.decision
            outcome = (f"{decision.action.value} @ {decision.confidence:.2f}" if decision is not None
                       else f"{model_result.outcome.value}: {model_result.why_no_answer}")
            rows.append([symbol_round.symbol, model_result.model_name, outcome,
                         f"{model_result.latency_ms:.0f}", f"{model_result.cost_usd:.4f}"])
        consensus = symbol_round.consensus
        rows.append([symbol_round.symbol, f"**{CONSENSUS_MODEL}**", consensus.action.value, consensus.reason, ""])
    return markdown_table(["symbol", "model", "answer", "latency ms", "cost USD"], rows)


class DeliberationRoundConfig(dg.Config):
    """Run configuration of ``llm_deliberation``."""

    mode: DeliberationMode | None = Field(
        default=None, description="How this round decides; unset: the configured deliberation mode.")


@dg.asset(
    group_name=groups.DELIBERATION,
    # The prompt's indicators and regime come from the candles themselves (see
    # triplegain_core.llm.context), so a backtest rebuilds the very prompt: no feature table.
    deps=[candles_1m],
    kinds={"python", "postgres", "redis"},
    description="A deliberation round of the configured LLMs on every symbol (parallel vote, debate"
                " or council): per-model and consensus decisions on the Redis decision stream"
                " (expiring in market time), every call and lifecycle step stored. The risk rules"
                " still decide whether any of it is traded.",
)
def llm_deliberation(
    context: dg.AssetExecutionContext, config: DeliberationRoundConfig, postgres: PostgresResource,
    redis: RedisResource, llm: LLMResource,
) -> dg.MaterializeResult:
    """Ask the models, vote, publish the decisions for the executor, store everything."""
    settings = postgres.settings()
    if config.mode is not None:
        settings = settings.model_copy(update={
            "deliberation": settings.deliberation.model_copy(update={"mode": config.mode})})
    request_id = f"round-{context.run.run_id[:8]}-{uuid.uuid4().hex[:6]}"
    mode = settings.deliberation.mode
    # The account whose positions the models are shown: the one this mode's decisions trade.
    deciding = CONSENSUS_MODEL if mode is DeliberationMode.PARALLEL else mode.value
    with postgres.connect() as conn:
        contexts = market_contexts(conn, settings.symbols, model_account(deciding))
        weights = latest_weights(conn)
        primary = latest_primary(conn)
    if not contexts:
        return dg.MaterializeResult(metadata={
            "status": "no market data", "published": 0,
            "summary": dg.MetadataValue.md("No 1-minute candles stored yet: nothing to deliberate on."),
        })
    context.log.info("%s round %s on %s (weights: %s, primary: %s)", mode.value, request_id,
                     [c.symbol for c in contexts], weights or "neutral", primary or "none yet")
    result = asyncio.run(_round(settings, llm, postgres.url(), redis.url(), contexts, request_id, weights, primary))
    if result.status is LLMStatus.NO_MODELS_CONFIGURED:
        context.log.warning(result.availability.message)
        return dg.MaterializeResult(metadata={
            "status": result.status.value, "published": 0,
            "summary": dg.MetadataValue.md(result.availability.message),
        })
    with postgres.connect() as conn, redis.connected() as client:
        states = hand_over(DecisionLedger(conn), DecisionStream(client), result.records,
                           settings.deliberation.require_human_approval)
    approved = [d for d in result.tradeable if states[d.decision_id] is DecisionState.APPROVED]
    context.log.info("round %s: %d decisions, %d published, %d awaiting approval", request_id,
                     len(result.records), len(approved), len(result.tradeable) - len(approved))
    return dg.MaterializeResult(metadata={
        "status": result.status.value,
        "request_id": request_id,
        "models": ", ".join(result.availability.available),
        "published": len(approved),
        "awaiting_approval": len(result.tradeable) - len(approved),
        "mode": mode.value,
        ("votes" if mode is DeliberationMode.PARALLEL else "panels"): dg.MetadataValue.md(
            _votes_table(result) if mode is DeliberationMode.PARALLEL else _panels_table(result)),
        "decisions": dg.MetadataValue.md(decisions_table(result.records, states)),
    })
