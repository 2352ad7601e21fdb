"""Deliberation rounds inside a demo replay, on the market's own clock.

Every ``every_minutes`` of replayed market time the replay is held, the executor is let catch up
with every candle the streamer published closed, the configured models deliberate on the stored market
(the same round as the ``llm_deliberation`` asset), the decisions are handed over exactly as
Dagster hands them, and the replay is released once the executor has read them. Holding the
market while the models think keeps the demo honest (no decision is made on a market that
moved on) and deterministic with recorded answers. With no model configured it says so once
and the demo trades on the rules alone.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import psycopg
import redis

from streamer.executor.loop import TradingLoop
from streamer.replay.exchange import ReplayExchange
from triplegain_core.config import Settings
from triplegain_core.contracts.decision_streams import DecisionStream
from triplegain_core.contracts.hot_state import HotStateReader
from triplegain_core.decisions.handover import hand_over
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.decisions.published import model_account
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.deliberation_config import DeliberationMode
from triplegain_core.llm.deliberation_round import deliberate
from triplegain_core.llm.models import LLMStatus
from triplegain_core.llm.voting import CONSENSUS_MODEL
from triplegain_core.model.market import US_PER_MINUTE
from triplegain_core.storage.decision_ledger import DecisionLedger
from triplegain_core.storage.llm_store import recorded_client
from triplegain_core.storage.market_context import market_contexts

log = logging.getLogger(__name__)
POLL_S = 0.01
CATCH_UP_S = 10.0


@dataclass
class DeliberationLog:
    """What the demo's rounds did: the models' availability, and each round's hand-over."""

    status: LLMStatus | None = None
    message: str = ""
    rounds: int = 0
    decisions: int = 0
    published: int = 0
    accounts: set[str] = field(default_factory=set)


class DemoDeliberation:
    """Holds the replay at each deliberation mark and runs a round on the stored market."""

    def __init__(self, settings: Settings, database_url: str, redis_url: str, every_minutes: int = 60) -> None:
        if every_minutes < 1:
            raise ValueError(f"deliberation interval must be at least a minute, got {every_minutes}")
        self._settings = settings
        self._database_url = database_url
        self._redis_url = redis_url
        self._every_us = every_minutes * US_PER_MINUTE
        self.log = DeliberationLog()

    async def run(self, exchange: ReplayExchange, loop: TradingLoop) -> DeliberationLog:
        """Deliberate at every mark until the replay has finished."""
        async with recorded_client(self._settings.llm, self._database_url, self._redis_url) as client:
            availability = await client.availability()
            self.log.status, self.log.message = availability.status, availability.message
            if availability.status is LLMStatus.NO_MODELS_CONFIGURED:
                return self.log
            with psycopg.connect(self._database_url, autocommit=True) as conn:
                redis_client = redis.Redis.from_url(self._redis_url)
                try:
                    await self._marks(client, conn, redis_client, exchange, loop)
                finally:
                    redis_client.close()
        return self.log

    async def _marks(self, client: LLMClient, conn: psycopg.Connection, redis_client: redis.Redis,
                     exchange: ReplayExchange, loop: TradingLoop) -> None:
        next_mark: int | None = None
        while not exchange.finished.is_set():
            if next_mark is None:
                if exchange.now_us == 0:
                    await asyncio.sleep(POLL_S)
                    continue
                next_mark = (exchange.now_us // self._every_us + 1) * self._every_us
                exchange.hold_at(next_mark)
            if not exchange.held:
                await asyncio.sleep(POLL_S)
                continue
            try:
                await self._caught_up(exchange, HotStateReader(redis_client), loop)
                await self._round(client, conn, redis_client, loop, next_mark)
            finally:
                next_mark += self._every_us
                exchange.release()
                exchange.hold_at(next_mark)

    async def _caught_up(self, exchange: ReplayExchange, hot_state: HotStateReader, loop: TradingLoop) -> None:
        """Wait until the streamer has stored and published every trade the held exchange sent
        (its heartbeat says so), then until the executor has processed the newest closed candle;
        at most ``CATCH_UP_S``, so a stuck process cannot stop the demo."""
        deadline = asyncio.get_running_loop().time() + CATCH_UP_S
        while asyncio.get_running_loop().time() < deadline:
            beat = hot_state.streamer_heartbeat()
            if beat is not None and beat.last_trade_ts_us >= exchange.now_us:
                closes = [c.close_time_us for s in self._settings.symbols for c in hot_state.recent_candles(s, limit=1)]
                if closes and (loop.kernel.market_time_us or 0) >= max(closes):
                    return
            await asyncio.sleep(POLL_S)
        log.warning("executor still behind the stored candles after %.0f s: deliberating anyway", CATCH_UP_S)

    async def _round(self, client: LLMClient, conn: psycopg.Connection, redis_client: redis.Redis,
                     loop: TradingLoop, mark_us: int) -> None:
        mode = self._settings.deliberation.mode
        deciding = CONSENSUS_MODEL if mode is DeliberationMode.PARALLEL else mode.value
        contexts = market_contexts(conn, self._settings.symbols, model_account(deciding))
        if not contexts:
            return
        request_id = f"demo-{mark_us // US_PER_MINUTE}"
        result = await deliberate(client, contexts, request_id, self._settings.deliberation)
        states = hand_over(DecisionLedger(conn), DecisionStream(redis_client), result.records,
                           self._settings.deliberation.require_human_approval)
        published = sum(state is DecisionState.APPROVED for state in states.values())
        self.log.rounds += 1
        self.log.decisions += len(result.records)
        self.log.published += published
        self.log.accounts.update(r.decision.account for r in result.records if r.tradeable)
        log.info("demo round %s: %d decisions, %d published", request_id, len(result.records), published)
        intake = loop.intake
        if intake is None:
            return
        # Released only once the executor has read them, so they are judged on this market.
        target = intake.stats.received + published
        while intake.stats.received < target:
            await asyncio.sleep(POLL_S)
