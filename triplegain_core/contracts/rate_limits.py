"""The LLM request-rate windows every process shares through Redis (a contract: any process
that calls a provider model counts its requests in the same key, with the same script).

One sorted set per provider model, ``tg:v1:llm:rate:{provider}:{model_id}``, holds the request
times of the last minute (Redis's own clock, so hosts need not agree). A Lua script trims,
counts and admits atomically.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from triplegain_core.contracts.hot_state import PREFIX

WINDOW_MS = 60_000

# KEYS[1] the model's window; ARGV: limit, window_ms, member. Returns 0 when admitted, else the
# milliseconds until a slot frees.
_ADMIT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now_ms)
"""


def rate_key(provider: str, model_id: str) -> str:
    """The Redis key of one provider model's request window."""
    return f"{PREFIX}llm:rate:{provider}:{model_id}"


class RedisRateWindow:
    """A sliding window (one minute unless told) per provider model, shared through Redis: the
    ``RateWindow`` of :class:`triplegain_core.llm.rate_limit.RateLimiter`."""

    def __init__(self, client: aioredis.Redis, window_ms: int = WINDOW_MS) -> None:
        self._window_ms = window_ms
        self._admit = client.register_script(_ADMIT)

    async def admit(self, provider: str, model_id: str, per_minute: int) -> int:
        """Take one of the ``per_minute`` slots of the model's window: 0 when taken, else the
        milliseconds until the oldest request ages out."""
        return int(await self._admit(keys=[rate_key(provider, model_id)],
                                     args=[per_minute, self._window_ms, uuid.uuid4().hex]))


@asynccontextmanager
async def shared_rate_window(redis_url: str) -> AsyncIterator[RedisRateWindow]:
    """The shared rate windows of the Redis at ``redis_url``; its client is closed on exit."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield RedisRateWindow(client)
    finally:
        await client.aclose()
