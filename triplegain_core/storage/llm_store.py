"""LLM calls and recorded answers in PostgreSQL (tables of migrations 0020 and 0021).

Async (psycopg ``AsyncConnection``) because it is written from inside the client's fan-out.
It is both the client's :class:`~triplegain_core.llm.client.CallRecorder` and its
:class:`~triplegain_core.llm.answer_cache.AnswerCache`. Writes are keyed (call id, prompt hash):
writing the same record twice leaves one row, and the first recorded answer of a prompt stays.
:func:`recorded_client` is the LLM client as every process uses it: its calls recorded here,
its request rates shared through Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from triplegain_core.contracts.rate_limits import shared_rate_window
from triplegain_core.llm.answer_cache import CachedAnswer, CacheMode
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.models import LLMCall, LLMSettings, TokenUsage
from triplegain_core.llm.rate_limit import RateLimiter
from triplegain_core.llm.trading_decision import Rejection, TradingDecision

_CALL_COLUMNS = (
    "call_id", "request_id", "time", "model_name", "provider", "model_id", "symbol", "purpose",
    "prompt_hash", "system_prompt", "user_prompt", "raw_answer", "outcome", "decision",
    "rejection_reason", "rejection_detail", "rejection_field", "failure", "error_detail", "http_attempts",
    "latency_ms", "input_tokens", "output_tokens", "cost_usd", "from_cache", "answer_kind", "answer",
)


class LLMStore:
    """Writes and reads ``llm_calls`` and ``llm_answer_cache``."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self._conn = conn

    async def record_call(self, call: LLMCall) -> None:
        """Store one call; a call id already stored is left as it is."""
        values = (
            call.call_id, call.request_id, call.time, call.model_name, call.provider.value,
            call.model_id, call.symbol, call.purpose.value, call.prompt_hash, call.system_prompt,
            call.user_prompt, call.raw_answer, call.outcome.value,
            Jsonb(call.decision.model_dump(mode="json")) if call.decision else None,
            call.rejection.reason.value if call.rejection else None,
            call.rejection.detail if call.rejection else None,
            call.rejection.field if call.rejection else None,
            call.failure.value if call.failure else None, call.error_detail, call.http_attempts,
            call.latency_ms, call.usage.input_tokens, call.usage.output_tokens, call.cost_usd,
            call.from_cache, call.answer_kind,
            Jsonb(call.answer) if call.answer is not None else None,
        )
        placeholders = ", ".join(["%s"] * len(_CALL_COLUMNS))
        await self._conn.execute(
            f"INSERT INTO llm_calls ({', '.join(_CALL_COLUMNS)}) VALUES ({placeholders})"
            " ON CONFLICT (call_id) DO NOTHING",
            values,
        )

    async def calls(self, *, request_id: str | None = None, model_name: str | None = None) -> list[LLMCall]:
        """Stored calls in time order, optionally of one request and/or one model."""
        async with self._conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT {', '.join(_CALL_COLUMNS)} FROM llm_calls"
                " WHERE (%(r)s::text IS NULL OR request_id = %(r)s)"
                " AND (%(m)s::text IS NULL OR model_name = %(m)s) ORDER BY time, call_id",
                {"r": request_id, "m": model_name},
            )
            rows = await cur.fetchall()
        return [_call_from_row(row) for row in rows]

    async def get_answer(self, prompt_hash: str) -> CachedAnswer | None:
        """The answer recorded for ``prompt_hash``, if any."""
        async with self._conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT prompt_hash, provider, model_id, system_prompt, user_prompt, raw_answer,"
                " input_tokens, output_tokens, recorded_at FROM llm_answer_cache"
                " WHERE prompt_hash = %s",
                (prompt_hash,),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        usage = TokenUsage(input_tokens=row.pop("input_tokens"), output_tokens=row.pop("output_tokens"))
        return CachedAnswer(usage=usage, **row)

    async def put_answer(self, answer: CachedAnswer) -> None:
        """Record an answer; the first one recorded for a prompt hash stays."""
        await self._conn.execute(
            "INSERT INTO llm_answer_cache (prompt_hash, provider, model_id, system_prompt,"
            " user_prompt, raw_answer, input_tokens, output_tokens, recorded_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (prompt_hash) DO NOTHING",
            (answer.prompt_hash, answer.provider, answer.model_id, answer.system_prompt,
             answer.user_prompt, answer.raw_answer, answer.usage.input_tokens,
             answer.usage.output_tokens, answer.recorded_at),
        )


@asynccontextmanager
async def llm_store(database_url: str) -> AsyncIterator[LLMStore]:
    """An LLMStore on its own autocommit connection to ``database_url``, closed on exit."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        yield LLMStore(conn)


class DatabaseRecorder:
    """A CallRecorder that opens its connection on first use, on the event loop that records
    (a client built inside another thread's loop, like the gate's, records there)."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._store: LLMStore | None = None

    async def record_call(self, call: LLMCall) -> None:
        """Store ``call`` (idempotently, by call id)."""
        if self._store is None:
            conn = await psycopg.AsyncConnection.connect(self._database_url, autocommit=True)
            self._store = LLMStore(conn)
        await self._store.record_call(call)


def _call_from_row(row: dict[str, Any]) -> LLMCall:
    decision = row.pop("decision")
    reason, detail, field = row.pop("rejection_reason"), row.pop("rejection_detail"), row.pop("rejection_field")
    usage = TokenUsage(input_tokens=row.pop("input_tokens"), output_tokens=row.pop("output_tokens"))
    return LLMCall(
        **row,
        usage=usage,
        decision=TradingDecision.model_validate(decision) if decision is not None else None,
        rejection=Rejection(reason=reason, detail=detail, field=field) if reason is not None else None,
    )


@asynccontextmanager
async def recorded_client(settings: LLMSettings, database_url: str, redis_url: str,
                          cache_mode: CacheMode = CacheMode.LIVE,
                          rate_limit_wait_s: float = 5.0) -> AsyncIterator[LLMClient]:
    """A client over ``settings``' models, recording every call in the database at ``database_url``."""
    async with (
        llm_store(database_url) as store,
        shared_rate_window(redis_url) as window,
        LLMClient(settings, cache=store, cache_mode=cache_mode, recorder=store, rate_limiter=RateLimiter(window),
                  rate_limit_wait_s=rate_limit_wait_s) as client,
    ):
        yield client
