"""The LLM client as every process uses it: each call recorded in PostgreSQL (answers cached by
prompt hash in record/replay mode), request rates shared through Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from triplegain_core.contracts.rate_limits import shared_rate_window
from triplegain_core.llm.answer_cache import CacheMode
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.models import LLMSettings
from triplegain_core.llm.rate_limit import RateLimiter
from triplegain_core.storage.llm_store import llm_store


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
