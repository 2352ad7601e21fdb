"""The LLM client as every process uses it: each call recorded in PostgreSQL (answers cached by
prompt hash in record/replay mode), request rates shared through Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import redis.asyncio as aioredis

from triplegain_core.llm.answer_cache import CacheMode
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.models import LLMCall, LLMSettings
from triplegain_core.llm.rate_limit import RedisRateLimiter
from triplegain_core.storage.llm_store import LLMStore


@asynccontextmanager
async def recorded_client(settings: LLMSettings, database_url: str, redis_url: str,
                          cache_mode: CacheMode = CacheMode.LIVE,
                          rate_limit_wait_s: float = 5.0) -> AsyncIterator[LLMClient]:
    """A client over ``settings``' models, recording every call in the database at ``database_url``."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        store = LLMStore(conn)
        shared = aioredis.Redis.from_url(redis_url)
        try:
            async with LLMClient(settings, cache=store, cache_mode=cache_mode, recorder=store,
                                 rate_limiter=RedisRateLimiter(shared),
                                 rate_limit_wait_s=rate_limit_wait_s) as client:
                yield client
        finally:
            await shared.aclose()


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
