"""The executor's decisions, delivered off the trading loop through the stream's consumer group.

A :class:`DecisionFeed` thread blocks on the consumer group (XREADGROUP), claims now and then
what a dead executor left pending (XAUTOCLAIM), and runs the sweeper that publishes approved
decisions missing from the stream. Each cycle the loop's
:class:`~triplegain_core.decisions.intake.DecisionIntake` takes what arrived, in memory: no
cycle waits on Redis for decisions, which are rare. A decision is acknowledged (settled) by the
intake once what it led to is recorded; until then it stays pending, and a crash delivers it
again. A failed read (Redis or PostgreSQL away) is logged and retried: the feed never stops on
one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

from triplegain_core.contracts.decision_streams import DecisionConsumer, Delivery
from triplegain_core.decisions.published import PublishedDecision

log = logging.getLogger(__name__)

BLOCK_MS = 500  # longest wait on the group before the feed looks whether it is stopped
CLAIM_IDLE_MS = 30_000  # an entry pending this long belongs to a consumer that stopped
CLAIM_EVERY_S = 10.0
SWEEP_EVERY_S = 30.0
RETRY_S = 1.0


class DecisionFeed:
    """Decisions delivered to ``consumer``, gathered on a thread; the intake's source.

    ``sweep`` (publish the approved decisions missing from the stream; returns how many) runs
    every ``sweep_every_s``, at once on start. Use it as a context manager, or :meth:`start`
    and :meth:`stop` it.
    """

    # Decisions come through the group, not the hot state's XREAD.
    follows_hot_state = False

    def __init__(self, consumer: DecisionConsumer, sweep: Callable[[], int] | None = None, *,
                 block_ms: int = BLOCK_MS, claim_idle_ms: int = CLAIM_IDLE_MS,
                 claim_every_s: float = CLAIM_EVERY_S, sweep_every_s: float = SWEEP_EVERY_S) -> None:
        self._consumer = consumer
        self._sweep = sweep
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._claim_every_s = claim_every_s
        self._sweep_every_s = sweep_every_s
        self._lock = threading.Lock()
        self._arrived: list[PublishedDecision] = []
        self._in_flight: dict[str, list[Delivery]] = {}  # decision id -> its unsettled deliveries
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.rejected = 0
        self.swept = 0
        self.claimed = 0

    def __enter__(self) -> DecisionFeed:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Join the group and start delivering on the feed's thread."""
        if self._thread is not None:
            raise RuntimeError("the decision feed is already started")
        self._consumer.join()
        self._thread = threading.Thread(target=self._run, name="decision-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop delivering; returns once the thread's last read is done (unsettled decisions stay
        pending in the group, for the next executor)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def after(self, last_id: str) -> tuple[str, list[PublishedDecision]]:
        """The decisions delivered since the last call, oldest first (``last_id`` is kept as it is:
        the group keeps the position)."""
        with self._lock:
            arrived, self._arrived = self._arrived, []
        return last_id, arrived

    def parse(self, entries: Sequence[tuple[bytes, Mapping[bytes, bytes]]], last_id: str
              ) -> tuple[str, list[PublishedDecision]]:
        """As :meth:`after`: entries read from the hot state are not this source's (the group
        delivers its own), so ``entries`` is empty here."""
        return self.after(last_id)

    def settled(self, decision: PublishedDecision) -> None:
        """Acknowledge every delivery of ``decision``: what it led to is recorded."""
        with self._lock:
            deliveries = self._in_flight.pop(decision.decision_id, [])
        for delivery in deliveries:
            self._consumer.settle(delivery)

    def _run(self) -> None:
        next_sweep = next_claim = time.monotonic()
        while not self._stopping.is_set():
            try:
                now = time.monotonic()
                if self._sweep is not None and now >= next_sweep:
                    next_sweep = now + self._sweep_every_s
                    self.swept += self._sweep()
                if now >= next_claim:
                    next_claim = now + self._claim_every_s
                    claimed = self._consumer.claim(self._claim_idle_ms)
                    self.claimed += len(claimed)
                    self._gather(claimed)
                self._gather(self._consumer.read(self._block_ms))
            except Exception:  # a server away: logged, retried; the loop goes on meanwhile
                log.exception("decision feed: read failed, retrying in %.0f s", RETRY_S)
                self._stopping.wait(RETRY_S)
            self.rejected = self._consumer.rejected

    def _gather(self, deliveries: Sequence[Delivery]) -> None:
        with self._lock:
            for delivery in deliveries:
                known = self._in_flight.setdefault(delivery.decision.decision_id, [])
                if any(d.entry_id == delivery.entry_id for d in known):
                    continue  # claimed back while still waiting here
                known.append(delivery)
                self._arrived.append(delivery.decision)
