"""Request-rate limits shared by every process through Redis.

One sorted set per provider model, ``tg:v1:llm:rate:{provider}:{model_id}``, holds the
request times of the last minute (Redis's own clock, so hosts need not agree). A Lua script
trims, counts and admits atomically; a request over the limit waits for the oldest to age out,
or gives up past ``max_wait_s`` so a deliberation never stalls behind a busy model.
"""

from __future__ import annotations

import asyncio
import uuid

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


class RedisRateLimiter:
    """A sliding window (one minute unless told) per provider model, shared through Redis."""

    def __init__(self, client: aioredis.Redis, window_ms: int = WINDOW_MS) -> None:
        self._client = client
        self._window_ms = window_ms
        self._admit = client.register_script(_ADMIT)

    async def acquire(self, key: str, per_minute: int, max_wait_s: float) -> bool:
        """Take one of the ``per_minute`` slots of ``key``'s window; False if none frees within ``max_wait_s``."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + max_wait_s
        member = uuid.uuid4().hex
        while True:
            wait_ms = int(await self._admit(keys=[key], args=[per_minute, self._window_ms, member]))
            if wait_ms == 0:
                return True
            if loop.time() + wait_ms / 1000 > give_up_at:
                return False
            await asyncio.sleep(wait_ms / 1000)
