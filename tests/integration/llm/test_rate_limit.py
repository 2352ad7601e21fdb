"""Per-model request limits shared through Redis by every client, as by every process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
import redis.asyncio as aioredis

from tests.support.llm_standins import LLMStandIn, Reply, keys, standin_model, standin_settings
from triplegain_core.contracts.rate_limits import RedisRateWindow, rate_key
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.models import CallOutcome, FailureKind, Provider
from triplegain_core.llm.prompts import MarketContext, build_prompt
from triplegain_core.llm.rate_limit import RateLimiter

pytestmark = pytest.mark.integration

GOOD = {
    "action": "HOLD", "symbol": "XRP/BTC", "confidence": 0.5, "position_size_pct": 0, "leverage": 1,
    "entry": None, "stop_loss": None, "take_profit": None,
    "invalidation": "a breakout either way", "reasoning": "range bound",
}


@pytest.fixture
def standin() -> Iterator[LLMStandIn]:
    with LLMStandIn() as server:
        yield server


def test_two_clients_share_one_limit_through_redis(
    standin: LLMStandIn, redis_url: str, redis_client: redis.Redis
) -> None:
    standin.script("gpt", default=Reply(text=json.dumps(GOOD)))
    model = standin_model("gpt", Provider.OPENAI, standin.url, requests_per_minute=3)
    settings = standin_settings(standin.url, models=(model,), fallback_chain=())
    prompt = build_prompt(MarketContext(symbol="XRP/BTC", time=datetime(2026, 3, 1, tzinfo=UTC), price=2e-5))

    async def two_processes() -> list:
        results = []
        for process in range(2):
            limiter = RateLimiter(RedisRateWindow(aioredis.Redis.from_url(redis_url)))
            async with LLMClient(settings, environ=keys("OPENAI_API_KEY"), rate_limiter=limiter,
                                 rate_limit_wait_s=0.0) as client:
                for i in range(2):
                    result = await client.ask("gpt", prompt, symbol="XRP/BTC", request_id=f"p{process}-{i}")
                    results.append(result.final)
        return results

    finals = asyncio.run(two_processes())
    assert [c.outcome for c in finals] == [CallOutcome.DECIDED] * 3 + [CallOutcome.FAILED]
    assert finals[-1].failure is FailureKind.LOCAL_RATE_LIMIT
    assert finals[-1].http_attempts == 0
    assert len(standin.requests_for("gpt")) == 3
    key = rate_key("openai", "gpt")
    assert redis_client.zcard(key) == 3
    assert 0 < redis_client.pttl(key) <= 60_000


def test_a_full_window_waits_for_a_slot_or_gives_up(redis_url: str, redis_client: redis.Redis) -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        limiter = RateLimiter(RedisRateWindow(aioredis.Redis.from_url(redis_url), window_ms=300))
        first = await limiter.acquire("test", "m", 1, max_wait_s=0.0)
        refused = await limiter.acquire("test", "m", 1, max_wait_s=0.0)
        waited = await limiter.acquire("test", "m", 1, max_wait_s=5.0)
        return first, refused, waited

    assert asyncio.run(scenario()) == (True, False, True)
