"""The trading loop's hot-state reader on its own thread: a cycle never waits on Redis.

A Redis round trip on this kind of machine takes 0.15 ms at its median but over a millisecond
at its tail, and more after the loop's 100 ms sleep (an idle server is slow to wake). The
:class:`HotStateFeed` makes that wait off the loop: its thread blocks on the hot state's
streams (closed candles, public trades, decisions) until the streamer publishes, reads the
latest prices and books in the same round trip, and gathers everything into one pending
:class:`~triplegain_core.contracts.hot_state.CyclePoll`. Each cycle :meth:`HotStateFeed.take` s what
gathered since the last one, in memory.

The feed reads exactly what the loop's own :meth:`~triplegain_core.contracts.hot_state.HotStateReader.poll`
would: candles, trades and stream entries in stream order, none skipped and none twice (each
read continues after the last id the previous one returned), and the prices and books as of
the feed's latest read. Prices and books of a publication without a stream entry (a book
update between two trades) arrive within ``idle_ms``.

A malformed entry is logged and skipped by the reader (see
:mod:`~triplegain_core.contracts.hot_state`). Redis out of reach (a connection refused or cut, a
timeout) does not stop the feed: it says so once, retries with a growing pause, and says when the
hot state is back; it then reads on after the last ids it had, so nothing published meanwhile is
missed. The loop meanwhile gets nothing new (no candle, no price), so it decides nothing on a
market it cannot see; the stale-market guard blocks entries once the market is too old, and the
failed reads count for the failure breaker (:meth:`HotStateFeed.take_failures`). Any other error
stops the feed; the next :meth:`take` raises it in the loop, as the loop's own poll would have.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType

import redis

from triplegain_core.contracts.hot_state import CyclePoll, HotStateReader, entry_id

log = logging.getLogger(__name__)

# Longest wait for a stream entry before the prices and books are read anyway.
IDLE_MS = 10
# How often a feed held back by a long cycle looks whether it is being stopped.
STOP_CHECK_S = 0.1
# The pauses between reads while Redis is out of reach: from the first to the longest, doubling.
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0


class FeedStopped(RuntimeError):
    """The feed's thread ended on an error; :attr:`__cause__` is that error."""


class HotStateFeed:
    """Reads the hot state continuously on a thread; the loop takes what gathered.

    ``last_id`` and ``trades_after`` are where the closed-candle and trade streams are read
    after (as for :meth:`HotStateReader.poll`), ``extra_streams`` the other streams to follow
    (name -> id). Use it as a context manager, or :meth:`start` and :meth:`stop` it.
    """

    def __init__(
        self,
        reader: HotStateReader,
        symbols: Sequence[str],
        last_id: str,
        *,
        trades_after: str | None = None,
        extra_streams: Mapping[str, str] | None = None,
        idle_ms: int = IDLE_MS,
    ) -> None:
        if idle_ms < 1:
            raise ValueError(f"idle_ms must be at least 1, got {idle_ms}")
        self._reader = reader
        self._symbols = tuple(symbols)
        self._idle_ms = idle_ms
        self._extra_ids = dict(extra_streams or {})
        self._pending = CyclePoll(last_id=last_id, trades_id=trades_after)
        self._fresh = False
        self._reads = 0
        self._reads_taken = 0
        self._failures = 0
        self.unreachable_since: float | None = None
        """When (``time.monotonic``) the hot state went out of reach; None while it answers."""
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._between_cycles = threading.Event()
        self._between_cycles.set()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> HotStateFeed:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    @property
    def failed(self) -> bool:
        """Whether the feed's thread ended on an error."""
        return self._error is not None

    @property
    def reads(self) -> int:
        """Round trips made so far."""
        return self._reads

    @property
    def reads_taken(self) -> int:
        """Round trips whose results the last :meth:`take` included (more than the take before:
        it holds a fresh read of the hot state)."""
        return self._reads_taken

    def start(self) -> None:
        """Start reading on the feed's thread."""
        if self._thread is not None:
            raise RuntimeError("the feed is already started")
        self._thread = threading.Thread(target=self._run, name="hot-state-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading; returns once the thread's last read is done and gathered."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def cycle(self) -> Iterator[CyclePoll]:
        """A cycle's hold on the feed: what gathered since the last one (as :meth:`take`), with
        the feed's next read held back until the cycle ends. The loop has the machine to
        itself while it decides; the feed reads in the gaps between cycles (a read already
        waiting on Redis when the cycle began still completes)."""
        self._between_cycles.clear()
        try:
            yield self.take()
        finally:
            self._between_cycles.set()

    def take(self) -> CyclePoll:
        """Everything gathered since the last take: the new candles, trades and stream entries
        in stream order, the latest prices and books, and the ids to continue after.

        Raises :class:`FeedStopped` once the feed's thread has failed (after what it gathered
        before the failure has been taken)."""
        with self._changed:
            self._reads_taken = self._reads
            taken = self._pending
            self._pending = CyclePoll(last_id=taken.last_id, trades_id=taken.trades_id,
                                      prices=taken.prices, books=taken.books, heartbeat=taken.heartbeat)
            self._fresh = False
            if self._error is not None and not (taken.candles or taken.trades or taken.extra):
                raise FeedStopped("the hot-state feed stopped") from self._error
        return taken

    def take_failures(self) -> int:
        """Reads that failed because Redis was out of reach since the last call."""
        with self._changed:
            failures, self._failures = self._failures, 0
        return failures

    def wait_fresh(self, timeout_s: float) -> bool:
        """Wait until something new gathered since the last take (a stream entry, or a price
        or book that changed); False when nothing did within ``timeout_s``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._fresh or self._error is not None, timeout_s)

    def _run(self) -> None:
        pause = RETRY_FIRST_S
        try:
            while not self._stopping.is_set():
                if not self._between_cycles.wait(STOP_CHECK_S):
                    continue
                try:
                    self._read_once()
                except (redis.ConnectionError, redis.TimeoutError) as error:
                    self._unreachable(error)
                    self._stopping.wait(pause)
                    pause = min(pause * 2, RETRY_MAX_S)
                    continue
                pause = RETRY_FIRST_S
                if self.unreachable_since is not None:
                    log.warning("the hot state answers again after %.1f s: reading on after the last ids read",
                                time.monotonic() - self.unreachable_since)
                    self.unreachable_since = None
        except Exception as error:  # handed to the loop by take(), which raises it there
            log.exception("hot-state feed stopped")
            with self._changed:
                self._error = error
                self._changed.notify_all()

    def _unreachable(self, error: Exception) -> None:
        with self._changed:
            self._failures += 1
        if self.unreachable_since is None:
            self.unreachable_since = time.monotonic()
            log.error("the hot state is out of reach (%s): no market, so no new order, until it answers again;"
                      " retrying", error)

    def _read_once(self) -> None:
        with self._changed:
            last_id, trades_id = self._pending.last_id, self._pending.trades_id
            extra = dict(self._extra_ids)
        polled = self._reader.poll(last_id, self._symbols, trades_after=trades_id, extra_streams=extra,
                                   block_ms=self._idle_ms)
        with self._changed:
            self._reads += 1
            pending = self._pending
            fresh = bool(polled.candles or polled.trades or polled.extra) or _changed(pending, polled)
            pending.candles += polled.candles
            pending.trades += polled.trades
            for name, entries in polled.extra.items():
                pending.extra.setdefault(name, []).extend(entries)
                self._extra_ids[name] = entry_id(entries[-1][0])
            pending.last_id, pending.trades_id = polled.last_id, polled.trades_id
            pending.prices, pending.books = polled.prices, polled.books
            pending.heartbeat = polled.heartbeat
            if fresh:
                self._fresh = True
                self._changed.notify_all()


def _changed(before: CyclePoll, after: CyclePoll) -> bool:
    """Whether ``after``'s prices or books differ from ``before``'s. The reader hands back the
    very same object for a value published again unchanged, so identity decides."""
    return (before.prices.keys() != after.prices.keys() or before.books.keys() != after.books.keys()
            or any(after.prices[s] is not p for s, p in before.prices.items())
            or any(after.books[s] is not b for s, b in before.books.items()))
