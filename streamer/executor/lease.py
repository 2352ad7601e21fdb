"""Keeping the executor lease while the trading loop runs."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from triplegain_core.storage.executor_lease import ExecutorLease, LeaseHeld

log = logging.getLogger(__name__)

LEASE_CHECK_S = 2.0


async def keep_lease(lease: ExecutorLease, stop: asyncio.Event, every_s: float = LEASE_CHECK_S) -> LeaseHeld | None:
    """Check every ``every_s`` that ``lease`` is held, taking it again after a lost connection;
    when another executor took it meanwhile, set ``stop`` and return why (None otherwise)."""
    while not stop.is_set():
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        if stop.is_set():
            return None
        try:
            await asyncio.to_thread(lease.renew)
        except LeaseHeld as lost:
            log.error("executor lease lost, stopping: %s", lost)
            stop.set()
            return lost
    return None
