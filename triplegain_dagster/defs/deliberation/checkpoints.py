"""The ``position_checkpoints`` asset: every open position of the LLM accounts re-evaluated.

At each scheduled checkpoint (every 4 hours by default, ``checkpoint_schedule``) the model behind
each LLM account (the account's own model; the ModelSelector's primary for the consensus,
debate and council accounts) says STAY, EXIT, FLIP or REDUCE for each of its open positions.
EXIT and FLIP go to the executor as decisions for that account, through the same lifecycle and
risk rules as any other; an invalid or late answer is a STAY with the reason recorded.
"""

import asyncio
import uuid

import dagster as dg

from triplegain_core.config import Settings
from triplegain_core.contracts.decision_streams import DecisionStream
from triplegain_core.decisions.handover import decisions_table, hand_over
from triplegain_core.decisions.published import LLM_ACCOUNT_PREFIX, DeliberatedDecision
from triplegain_core.llm.checkpoint_decisions import checkpoint_decisions
from triplegain_core.llm.checkpoints import CheckpointVerdict, run_checkpoint
from triplegain_core.llm.models import LLMStatus
from triplegain_core.llm.prompts import MarketContext
from triplegain_core.model.market import datetime_to_us
from triplegain_core.portfolio.positions import Position
from triplegain_core.reporting.reports import markdown_table
from triplegain_core.storage.decision_ledger import DecisionLedger
from triplegain_core.storage.llm_store import recorded_client
from triplegain_core.storage.market_context import market_contexts
from triplegain_core.storage.model_accounts import open_llm_positions
from triplegain_core.storage.model_scores import latest_primary
from triplegain_dagster import groups
from triplegain_dagster.resources import LLMResource, PostgresResource, RedisResource

AccountBook = dict[str, tuple[list[Position], dict[str, MarketContext]]]


def _open_llm_positions(postgres: PostgresResource, settings: Settings) -> AccountBook:
    with postgres.connect() as conn:
        return {account: (positions, {c.symbol: c for c in market_contexts(conn, settings.symbols, account)})
                for account, positions in open_llm_positions(conn).items()}


def _model_for(account: str, available: tuple[str, ...], primary: str | None) -> str | None:
    own = account.removeprefix(LLM_ACCOUNT_PREFIX)
    if own in available:
        return own
    return primary if primary in available else (available[0] if available else None)


async def _checkpoint(settings: Settings, llm: LLMResource, database_url: str, redis_url: str, book: AccountBook,
                      request_id: str, primary: str | None) -> tuple[str, list[tuple[str, CheckpointVerdict]]]:
    async with recorded_client(settings.llm, database_url, redis_url, llm.mode(), llm.rate_limit_wait_s) as client:
        availability = await client.availability()
        if availability.status is LLMStatus.NO_MODELS_CONFIGURED:
            return availability.message, []
        verdicts: list[tuple[str, CheckpointVerdict]] = []
        for account, (positions, contexts) in book.items():
            model = _model_for(account, availability.available, primary)
            assert model is not None  # some model is available
            found = await run_checkpoint(client, model, positions, contexts, request_id=f"{request_id}:{account}",
                                         min_confidence=settings.deliberation.min_confidence)
            verdicts.extend((account, verdict) for verdict in found)
        return availability.message, verdicts


def _verdicts_table(verdicts: list[tuple[str, CheckpointVerdict]]) -> str:
    return markdown_table(
        ["account", "position", "symbol", "model", "verdict", "confidence", "why"],
        [[account, v.position_id, v.symbol, v.model, v.action.value,
          "-" if v.confidence is None else f"{v.confidence:.2f}", v.fallback_reason or v.reasoning[:120]]
         for account, v in verdicts],
    )


@dg.asset(
    group_name=groups.DELIBERATION,
    kinds={"python", "postgres", "redis"},
    description="Each open position of the LLM accounts re-evaluated by its model: STAY, EXIT, FLIP"
                " or REDUCE. EXIT and FLIP go to the executor as decisions (risk rules apply);"
                " REDUCE is recorded only (the paper executor closes whole positions).",
)
def position_checkpoints(
    context: dg.AssetExecutionContext, postgres: PostgresResource, redis: RedisResource, llm: LLMResource,
) -> dg.MaterializeResult:
    """Ask, per LLM account, about every open position; hand EXIT and FLIP over to the executor."""
    settings = postgres.settings()
    book = _open_llm_positions(postgres, settings)
    if not book:
        return dg.MaterializeResult(metadata={
            "positions": 0, "summary": dg.MetadataValue.md("No open position in any LLM account."),
        })
    with postgres.connect() as conn:
        primary = latest_primary(conn)
    request_id = f"checkpoint-{context.run.run_id[:8]}-{uuid.uuid4().hex[:6]}"
    message, verdicts = asyncio.run(
        _checkpoint(settings, llm, postgres.url(), redis.url(), book, request_id, primary))
    if not verdicts:
        context.log.warning(message)
        return dg.MaterializeResult(metadata={"positions": sum(len(p) for p, _ in book.values()),
                                              "summary": dg.MetadataValue.md(message)})
    records: list[DeliberatedDecision] = []
    for account, (_, contexts) in book.items():
        own = [v for a, v in verdicts if a == account]
        market_time_us = max(datetime_to_us(c.time) for c in contexts.values())
        records.extend(checkpoint_decisions(own, account, market_time_us, request_id,
                                            settings.deliberation.decision_ttl_s, settings.deliberation.min_confidence))
    with postgres.connect() as conn, redis.connected() as client:
        states = hand_over(DecisionLedger(conn), DecisionStream(client), records,
                           settings.deliberation.require_human_approval)
    context.log.info("checkpoint %s: %d verdicts, %d decisions handed over", request_id, len(verdicts), len(records))
    return dg.MaterializeResult(metadata={
        "positions": len(verdicts),
        "verdicts": dg.MetadataValue.md(_verdicts_table(verdicts)),
        "decisions": dg.MetadataValue.md(decisions_table(records, states) if records else "No order asked."),
    })
