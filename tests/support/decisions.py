"""Decisions as the deliberation hands them over, and the executor's side of them as
`triplegain execute` builds it, for the tests that trade decisions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis

from streamer.executor.decision_feed import DecisionFeed
from triplegain_core.contracts.decision_streams import DecisionConsumer, DecisionStream
from triplegain_core.decisions.handover import republish_approved
from triplegain_core.decisions.intake import DecisionIntake
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.decisions.published import DeliberatedDecision, PublishedDecision
from triplegain_core.model.market import us_to_datetime
from triplegain_core.storage.decision_ledger import DecisionLedger


def store_approved(ledger: DecisionLedger, *decisions: PublishedDecision) -> None:
    """Store ``decisions`` as a deliberation round does, their lifecycles approved (not published)."""
    ledger.record([DeliberatedDecision(request_id="test", mode="test", decision=d) for d in decisions])
    for decision in decisions:
        ledger.start(decision.decision_id, us_to_datetime(decision.market_time_us), decision.source,
                     [(DecisionState.PENDING, "deliberated"), (DecisionState.APPROVED, "human approval is off")])


@contextmanager
def executor_intake(client: redis.Redis, database_url: str, consumer: str = "paper", *,
                    claim_idle_ms: int = 30_000, claim_every_s: float = 10.0,
                    sweep_every_s: float = 30.0) -> Iterator[DecisionIntake]:
    """The executor's decision intake as `triplegain execute` builds it: the consumer group's
    feed running on its thread (with the sweeper), the ledger on a connection of its own."""

    def sweep() -> int:
        with psycopg.connect(database_url, autocommit=True) as conn:
            return len(republish_approved(DecisionLedger(conn), DecisionStream(client)))

    with psycopg.connect(database_url, autocommit=True) as conn, \
            DecisionFeed(DecisionConsumer(client, consumer), sweep, claim_idle_ms=claim_idle_ms,
                         claim_every_s=claim_every_s, sweep_every_s=sweep_every_s) as feed:
        yield DecisionIntake(feed, DecisionLedger(conn))
