"""Request-rate limits per provider model, shared by every process.

The window itself is kept where every process sees it (Redis:
:class:`triplegain_core.contracts.rate_limits.RedisRateWindow`); this limiter decides how to use
it: a request over the limit waits for the oldest to age out, or gives up past ``max_wait_s`` so
a deliberation never stalls behind a busy model.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class RateWindow(Protocol):
    """A per-model window of recent requests, shared by every process."""

    async def admit(self, provider: str, model_id: str, per_minute: int) -> int:
        """Take a slot: 0 when taken, else the milliseconds until one frees."""


class RateLimiter:
    """Admits a model's requests at most ``per_minute`` a minute, waiting a bounded time for a slot."""

    def __init__(self, window: RateWindow) -> None:
        self._window = window

    async def acquire(self, provider: str, model_id: str, per_minute: int, max_wait_s: float) -> bool:
        """Take one of the ``per_minute`` slots of the model's window; False if none frees within ``max_wait_s``."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + max_wait_s
        while True:
            wait_ms = await self._window.admit(provider, model_id, per_minute)
            if wait_ms == 0:
                return True
            if loop.time() + wait_ms / 1000 > give_up_at:
                return False
            await asyncio.sleep(wait_ms / 1000)
