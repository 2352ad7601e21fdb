"""The Redis streams between deliberation (Dagster) and the executor, both ways.

- ``stream:decisions``: deliberated decisions for the executor. Each carries the market time it
  was deliberated on and an expiry in market time; the executor refuses an expired one, so a
  decision that waited too long (a slow round, a stopped executor) is never traded.
- ``stream:signals:strong``: the executor's strong technical signals, which a Dagster sensor
  turns into an early deliberation round.

Both are part of the hot-state contract (``docs/HOT_STATE.md``). A malformed entry is counted,
logged and skipped by the reader: it is never an order and never stops the stream.

The executor reads decisions through a consumer group (:class:`DecisionConsumer`): each entry is
delivered to one consumer and stays pending until it is settled (acknowledged), which the
executor does only once what the decision led to is recorded; an entry left pending by a
consumer that died is claimed again. Publication is idempotent on the decision id (a marker key
per decision while its entry waits to be settled), so the sweeper may publish every approved
decision again without doubling one that is already on its way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

import redis
from pydantic import BaseModel, ValidationError

from triplegain_core.contracts.hot_state import (
    DECISION_MARKER_TTL_S,
    DECISIONS_MAXLEN,
    PREFIX,
    STRONG_SIGNALS_MAXLEN,
    entry_id,
    xread_streams,
)
from triplegain_core.decisions.published import PublishedDecision, StrongSignal

log = logging.getLogger(__name__)

DECISIONS_STREAM = PREFIX + "stream:decisions"
STRONG_SIGNALS_STREAM = PREFIX + "stream:signals:strong"
# The executors' consumer group: each decision goes to one executor (the llm:* accounts are shared).
EXECUTOR_GROUP = "executor"
T = TypeVar("T", bound=BaseModel)


class _ModelStream(Generic[T]):
    """One Redis stream of JSON models: appended with a cap, read after a stream id, bad entries
    skipped and counted (never raised: a malformed entry must not stop its reader)."""

    def __init__(self, client: redis.Redis, stream: str, field: str, model: type[T], maxlen: int) -> None:
        self._client = client
        self._stream = stream
        self._field = field
        self._model = model
        self._maxlen = maxlen
        self.rejected = 0

    def publish(self, item: T) -> str:
        """Append ``item``; returns its stream id."""
        entry_id = self._client.xadd(self._stream, {self._field: item.model_dump_json()},
                                     maxlen=self._maxlen, approximate=True)
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    def after(self, last_id: str, count: int = 1000) -> tuple[str, list[T]]:
        """Entries published after ``last_id`` ("0" for all), oldest first, and the new last id."""
        reply = xread_streams(self._client.xread({self._stream: last_id}, count=count))
        if not reply:
            return last_id, []
        return self.parse(reply[0][1], last_id)

    def parse(self, entries: Sequence[tuple[bytes, Mapping[bytes, bytes]]], last_id: str) -> tuple[str, list[T]]:
        """The models of raw stream ``entries`` read elsewhere (the executor's one poll, as XREAD
        returns them) and the id to read after them."""
        found: list[T] = []
        field = self._field.encode()
        for raw_id, fields in entries:
            try:
                found.append(self._model.model_validate_json(fields[field]))
            except (KeyError, ValidationError) as exc:
                self.rejected += 1
                log.error("%s entry %s refused: %s", self._stream, raw_id, str(exc)[:300])
        if not entries:
            return last_id, found
        newest = entries[-1][0]
        return newest.decode() if isinstance(newest, bytes) else newest, found


def decision_marker_key(decision_id: str) -> str:
    """The key saying ``decision_id`` has an entry on the stream not yet settled (its id)."""
    return f"{PREFIX}decision:published:{decision_id}"


# Appends the decision unless its marker says an entry is already waiting; atomic, so two
# publishers (the deliberation and the sweeper) never both append. Returns {entry id, appended}.
_PUBLISH_ONCE = """
local waiting = redis.call('GET', KEYS[2])
if waiting then return {waiting, 0} end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], id, 'EX', ARGV[4])
return {id, 1}
"""

# Acknowledges one entry and drops its decision's marker when the marker names that entry: a
# decision whose outcome is then found unrecorded (still approved) may be published again.
_SETTLE = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 1
"""


class DecisionStream(_ModelStream[PublishedDecision]):
    """Decisions: published by the deliberation (once per decision id), read by the executor
    (through the hot state's XREAD here; :class:`DecisionConsumer` is the consumer group's way)."""

    follows_hot_state = True

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client, DECISIONS_STREAM, "d", PublishedDecision, DECISIONS_MAXLEN)
        self._publish_once = client.register_script(_PUBLISH_ONCE)

    def publish(self, item: PublishedDecision) -> str:
        """Append ``item`` unless an entry of the same decision waits unsettled on the stream;
        returns the id of the entry that carries it (the waiting one, if so)."""
        return self._append(item)[0]

    def settled(self, decision: PublishedDecision) -> None:
        """Nothing to acknowledge on a plain XREAD: its reader keeps its own position."""

    def publish_missing(self, item: PublishedDecision) -> bool:
        """Append ``item`` if no entry of it waits on the stream; whether it was appended."""
        return self._append(item)[1]

    def _append(self, item: PublishedDecision) -> tuple[str, bool]:
        reply = cast(list[object], self._publish_once(
            keys=[DECISIONS_STREAM, decision_marker_key(item.decision_id)],
            args=[self._field, item.model_dump_json(), DECISIONS_MAXLEN, DECISION_MARKER_TTL_S]))
        raw_id, appended = reply
        return entry_id(cast(bytes, raw_id)), bool(appended)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One decision delivered to this consumer: its stream entry and what it carries."""

    entry_id: str
    decision: PublishedDecision


class DecisionConsumer:
    """One executor's side of the decision stream's consumer group.

    ``consumer`` names it within the group; an executor that restarts under the same name gets
    back first what it was delivered and never settled (:meth:`read`). Malformed entries are
    logged, counted and acknowledged at once (nothing will ever make them tradeable).
    """

    def __init__(self, client: redis.Redis, consumer: str, group: str = EXECUTOR_GROUP) -> None:
        self._client = client
        self._consumer = consumer
        self._group = group
        self._parser = _ModelStream(client, DECISIONS_STREAM, "d", PublishedDecision, DECISIONS_MAXLEN)
        self._settle = client.register_script(_SETTLE)
        # Own pending entries (from before a restart) are read first, after this id, page by page.
        self._backlog: str | None = "0"
        self.rejected = 0

    @property
    def consumer(self) -> str:
        """This consumer's name in the group."""
        return self._consumer

    def join(self) -> None:
        """Create the group if it does not exist: it starts at the stream's beginning, so nothing
        published before the first executor ran is missed (the handled ones are skipped by their
        lifecycle)."""
        try:
            self._client.xgroup_create(DECISIONS_STREAM, self._group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, block_ms: int, count: int = 100) -> list[Delivery]:
        """The next deliveries: this consumer's own unsettled entries first, then new ones
        (waiting up to ``block_ms`` for one)."""
        if self._backlog is not None:
            entries = self._read_group(self._backlog, count, None)
            if entries:
                self._backlog = entry_id(entries[-1][0])
                return self._deliveries(entries)
            self._backlog = None
        return self._deliveries(self._read_group(">", count, block_ms))

    def claim(self, min_idle_ms: int, count: int = 100) -> list[Delivery]:
        """Entries delivered (to any consumer) and left unsettled for at least ``min_idle_ms``,
        now delivered to this one: a consumer that died leaves its entries to the others."""
        found: list[Delivery] = []
        cursor = "0-0"
        while True:
            reply = cast(list[object], self._client.xautoclaim(
                DECISIONS_STREAM, self._group, self._consumer, min_idle_ms, start_id=cursor, count=count))
            cursor = entry_id(cast(bytes, reply[0]))
            found += self._deliveries(cast(list[tuple[bytes, Mapping[bytes, bytes] | None]], reply[1]))
            if cursor == "0-0":
                return found

    def settle(self, delivery: Delivery) -> None:
        """Acknowledge ``delivery``: what it led to is recorded, it is never delivered again."""
        self._settle(keys=[DECISIONS_STREAM, decision_marker_key(delivery.decision.decision_id)],
                     args=[self._group, delivery.entry_id])

    def _read_group(self, after: str, count: int, block_ms: int | None
                    ) -> list[tuple[bytes, Mapping[bytes, bytes] | None]]:
        # RESP2, as XREAD's (see xread_streams): [[stream, [(id, fields or None), ...]]].
        reply = cast(list[tuple[bytes, list[tuple[bytes, Mapping[bytes, bytes] | None]]]], self._client.xreadgroup(
            self._group, self._consumer, {DECISIONS_STREAM: after}, count=count, block=block_ms))
        return reply[0][1] if reply else []

    def _deliveries(self, entries: Sequence[tuple[bytes, Mapping[bytes, bytes] | None]]) -> list[Delivery]:
        found = []
        for raw_id, fields in entries:
            if not fields:  # trimmed from the stream while pending: nothing left to deliver
                self._client.xack(DECISIONS_STREAM, self._group, raw_id)
                continue
            before = self._parser.rejected
            _, parsed = self._parser.parse([(raw_id, fields)], "0")
            if self._parser.rejected > before:
                self.rejected += 1
                self._client.xack(DECISIONS_STREAM, self._group, raw_id)
                continue
            found.append(Delivery(entry_id(raw_id), parsed[0]))
        return found


class StrongSignalStream(_ModelStream[StrongSignal]):
    """Strong technical signals: published by the executor, read by the Dagster sensor."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client, STRONG_SIGNALS_STREAM, "s", StrongSignal, STRONG_SIGNALS_MAXLEN)
