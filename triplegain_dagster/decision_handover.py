"""What every LLM asset shares: a recorded, rate-limited client, and handing decisions over.

Handing over stores each decision, starts its lifecycle (rejected when not tradeable, pending
when a person must approve, else approved) and publishes the approved ones on the Redis
decision stream, in that order: what the executor can read is already in the database.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import psycopg
import redis.asyncio as aioredis

from triplegain_core.config import Settings
from triplegain_core.decision_stream import DecisionStream, DeliberatedDecision
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.lifecycle import DecisionState
from triplegain_core.llm.rate_limit import RedisRateLimiter
from triplegain_core.market import us_to_datetime
from triplegain_core.reports import markdown_table
from triplegain_core.storage.decision_events import DecisionEventStore
from triplegain_core.storage.decision_store import DecisionStore
from triplegain_core.storage.llm_store import LLMStore
from triplegain_dagster.resources import LLMResource, PostgresResource, RedisResource


@asynccontextmanager
async def llm_client(settings: Settings, llm: LLMResource, database_url: str, redis_url: str) -> AsyncIterator[LLMClient]:
    """A client over the configured models: calls recorded in PostgreSQL (and answers cached by
    prompt hash in record/replay mode), rate limits shared through Redis."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        store = LLMStore(conn)
        shared = aioredis.Redis.from_url(redis_url)
        try:
            async with LLMClient(settings.llm, cache=store, cache_mode=llm.mode(), recorder=store,
                                 rate_limiter=RedisRateLimiter(shared),
                                 rate_limit_wait_s=llm.rate_limit_wait_s) as client:
                yield client
        finally:
            await shared.aclose()


def _steps(record: DeliberatedDecision, human_approval: bool) -> list[tuple[DecisionState, str]]:
    if not record.tradeable:
        return [(DecisionState.PENDING, "deliberated"), (DecisionState.REJECTED, f"refused: {record.refusal}")]
    if human_approval:
        return [(DecisionState.PENDING, "awaiting human approval")]
    return [(DecisionState.PENDING, "deliberated"), (DecisionState.APPROVED, "human approval is off")]


def hand_over(postgres: PostgresResource, redis: RedisResource, records: Sequence[DeliberatedDecision],
              human_approval: bool) -> dict[str, DecisionState]:
    """Store ``records``, start their lifecycles, publish the approved ones; returns each state."""
    states: dict[str, DecisionState] = {}
    with postgres.connect() as conn:
        DecisionStore(conn).record(records)
        events = DecisionEventStore(conn)
        for record in records:
            published = record.decision
            history = events.start(published.decision_id, us_to_datetime(published.market_time_us),
                                   published.source, _steps(record, human_approval))
            states[published.decision_id] = history[-1].target
    client = redis.client()
    try:
        stream = DecisionStream(client)
        for record in records:
            if states[record.decision.decision_id] is DecisionState.APPROVED:
                stream.publish(record.decision)
    finally:
        client.close()
    return states


def decisions_table(records: Sequence[DeliberatedDecision], states: dict[str, DecisionState]) -> str:
    """Each decision, its account, its lifecycle state and why it was refused, as markdown."""
    rows = [[r.decision.decision.symbol, r.decision.account, r.decision.decision.action.value,
             f"{r.decision.decision.confidence:.2f}", states[r.decision.decision_id].value, r.refusal or ""]
            for r in records]
    return markdown_table(["symbol", "account", "action", "confidence", "state", "refused because"], rows)
