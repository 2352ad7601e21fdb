"""Holes in the market data (:class:`MissedInterval`): planning their repair, and merging what
REST brings back.

A hole appears when the live stream stops (a reconnect, a restart of the streamer): the
trades between the last one stored and the first one received afterwards were never seen.
The plan is pure: which interval was missed, which buckets of each timeframe it touches, and
the candles those buckets must hold once the fetched trades (the missed minutes, from REST)
are merged with the stored ones (the rest of each touched bucket, up to a day for ``1d``).
The I/O (ccxt, the database) lives at the edges that call these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from triplegain_core.marketdata.candles import build_candles
from triplegain_core.model.market import (
    TIMEFRAME_US,
    TIMEFRAMES,
    Candle,
    Trade,
    us_to_datetime,
)

GapReason = Literal["gap", "reconnect"]


@dataclass(frozen=True, slots=True)
class MissedInterval:
    """Trades of ``symbol`` with ``from_us <= ts_us < to_us`` may be missing from the store.

    When the live stream found the hole (see :mod:`triplegain_core.marketdata.sequencer`) it
    also knows the missing trades' ids, ``first_trade_id..last_trade_id`` (inclusive):
    ``from_us`` is then the time of the last trade received before the hole and ``to_us`` one
    microsecond after the first trade received after it. ``reason``: ``"reconnect"`` when the
    hole spans a reconnection (or a restart), else ``"gap"``.
    """

    symbol: str
    from_us: int
    to_us: int
    first_trade_id: int | None = None
    last_trade_id: int | None = None
    reason: GapReason = "gap"

    def __post_init__(self) -> None:
        if self.to_us <= self.from_us:
            raise ValueError(f"empty missed interval of {self.symbol}: "
                             f"[{self.from_us}, {self.to_us})")
        if (self.first_trade_id is None) != (self.last_trade_id is None) or (
                self.first_trade_id is not None and self.last_trade_id is not None
                and self.last_trade_id < self.first_trade_id):
            raise ValueError(f"missed trade ids of {self.symbol} must be a range: "
                             f"{self.first_trade_id}..{self.last_trade_id}")

    @property
    def trades(self) -> int | None:
        """How many trades are missing, when their ids are known."""
        if self.first_trade_id is None or self.last_trade_id is None:
            return None
        return self.last_trade_id - self.first_trade_id + 1

    @property
    def minutes(self) -> tuple[int, int]:
        """``[first, end)`` of the minute buckets the interval touches (their whole span).

        The candles of these minutes are rebuilt, so the repair fetches their full span: a
        candle built from a partial minute would be wrong.
        """
        return self.span("1m")

    def span(self, timeframe: str) -> tuple[int, int]:
        """``[first, end)`` of the ``timeframe`` buckets the interval touches."""
        width = TIMEFRAME_US[timeframe]
        first = self.from_us - self.from_us % width
        last = (self.to_us - 1) - (self.to_us - 1) % width
        return first, last + width

    def __str__(self) -> str:
        return (f"{self.symbol} [{us_to_datetime(self.from_us):%Y-%m-%d %H:%M:%S.%f}, "
                f"{us_to_datetime(self.to_us):%Y-%m-%d %H:%M:%S.%f})")


def interval_after_outage(
    symbol: str, last_stored_us: int | None, resumed_us: int, fallback_us: int
) -> MissedInterval | None:
    """The interval to repair after the stream of ``symbol`` resumed at ``resumed_us``.

    From just after the last stored trade (or ``fallback_us``, e.g. a backfill horizon, when
    nothing is stored) up to the first trade received again; ``None`` when nothing was missed.
    """
    start = fallback_us if last_stored_us is None else last_stored_us + 1
    if resumed_us <= start:
        return None
    return MissedInterval(symbol, start, resumed_us)


def missed_by_trade_ids(previous: Trade, following: Trade) -> MissedInterval | None:
    """The hole between two consecutive trades of a symbol whose ids skip (Kraken numbers each
    book's trades in sequence); ``None`` when the ids follow each other."""
    if following.symbol != previous.symbol:
        raise ValueError(f"trades of two symbols: {previous.symbol}, {following.symbol}")
    if following.trade_id <= previous.trade_id + 1 or following.ts_us <= previous.ts_us:
        return None
    return MissedInterval(previous.symbol, previous.ts_us, following.ts_us + 1)


def merge_trades(*sources: Iterable[Trade]) -> list[Trade]:
    """The union of several trade lists, each trade once, in (time, trade id) order.

    A trade is known by (symbol, time, trade id), the key the store uses; the order is the
    exchange's printing order, which is how the live aggregator saw them.
    """
    unique: dict[tuple[str, int, int], Trade] = {}
    for source in sources:
        for trade in source:
            unique.setdefault((trade.symbol, trade.ts_us, trade.trade_id), trade)
    return sorted(unique.values(), key=lambda t: (t.symbol, t.ts_us, t.trade_id))


def repair_span(interval: MissedInterval, timeframes: Sequence[str] = TIMEFRAMES
                ) -> tuple[int, int]:
    """``[first, end)`` of the trades needed to rebuild every touched candle of ``timeframes``
    (the widest timeframe's buckets: a day for ``1d``)."""
    spans = [interval.span(tf) for tf in timeframes]
    return min(first for first, _ in spans), max(end for _, end in spans)


def repaired_candles(
    interval: MissedInterval, trades: Iterable[Trade], timeframes: Sequence[str] = TIMEFRAMES
) -> list[Candle]:
    """The candles of ``timeframes`` that the interval touches, rebuilt from ``trades``.

    ``trades`` must hold every trade of :func:`repair_span` (stored and fetched, in any order,
    duplicates allowed); trades of other symbols are ignored. With them, the last trade before
    the span and the first after it make the touched buckets without a trade quiet candles (flat
    at the close before them): without the one before, nothing is known to precede the span;
    without the one after, the buckets after the span's last trade are left to the live stream.
    Only the touched buckets are returned: the others were not changed by the hole.
    """
    first, end = repair_span(interval, timeframes)
    own = [t for t in merge_trades(trades) if t.symbol == interval.symbol]
    inside = [t for t in own if first <= t.ts_us < end]
    before = [t for t in own if t.ts_us < first][-1:]
    after = [t for t in own if t.ts_us >= end][:1]
    spans = {tf: interval.span(tf) for tf in timeframes}
    return [c for c in build_candles([*before, *inside, *after], tuple(timeframes))
            if spans[c.timeframe][0] <= c.open_time_us < spans[c.timeframe][1]]
