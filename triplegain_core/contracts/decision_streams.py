"""The Redis streams between deliberation (Dagster) and the executor, both ways.

- ``stream:decisions``: deliberated decisions for the executor. Each carries the market time it
  was deliberated on and an expiry in market time; the executor refuses an expired one, so a
  decision that waited too long (a slow round, a stopped executor) is never traded.
- ``stream:signals:strong``: the executor's strong technical signals, which a Dagster sensor
  turns into an early deliberation round.

Both are part of the hot-state contract (``docs/HOT_STATE.md``). A malformed entry is counted,
logged and skipped by the reader: it is never an order and never stops the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

import redis
from pydantic import BaseModel, ValidationError

from triplegain_core.contracts.hot_state import DECISIONS_MAXLEN, PREFIX, STRONG_SIGNALS_MAXLEN, xread_streams
from triplegain_core.decisions.published import PublishedDecision, StrongSignal

log = logging.getLogger(__name__)

DECISIONS_STREAM = PREFIX + "stream:decisions"
STRONG_SIGNALS_STREAM = PREFIX + "stream:signals:strong"
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
        for entry_id, fields in entries:
            try:
                found.append(self._model.model_validate_json(fields[field]))
            except (KeyError, ValidationError) as exc:
                self.rejected += 1
                log.error("%s entry %s refused: %s", self._stream, entry_id, str(exc)[:300])
        if not entries:
            return last_id, found
        newest = entries[-1][0]
        return newest.decode() if isinstance(newest, bytes) else newest, found


class DecisionStream(_ModelStream[PublishedDecision]):
    """Decisions: published by the deliberation, read by the executor."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client, DECISIONS_STREAM, "d", PublishedDecision, DECISIONS_MAXLEN)


class StrongSignalStream(_ModelStream[StrongSignal]):
    """Strong technical signals: published by the executor, read by the Dagster sensor."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client, STRONG_SIGNALS_STREAM, "s", StrongSignal, STRONG_SIGNALS_MAXLEN)
