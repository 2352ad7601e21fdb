"""The market guards: a stale market, a volatility halt and a failure breaker block new entries.

Each guard sets and lifts one :class:`~triplegain_core.risk.entry_blocks.EntryBlock`; while it is
set every entry of every account is a recorded rejected risk check and exits go on. Each set
and each lift is a :class:`GuardEvent`: logged, written to the audit trail (``guard_events``)
and counted in the executor's stats line.

**The stale-market guard** (:class:`StaleMarketGuard`, block ``STALE_MARKET``). The market's age
is the time from the newest market moment the executor knows (a candle close, a trade price's
time, the streamer heartbeat's last trade) to *now* on the clock the loop runs on:

- live, the wall clock (:class:`WallClock`): a stopped streamer, a silent exchange connection or
  an executor that cannot read the hot state all let the newest trade age on the wall clock;
- in a replay, the replay's market clock (:class:`ReplayClock`): market time as the replayed
  data carry it, in the order the executor takes them. A replay that stops stops its own clock:
  market time stands still with it, so nothing ages and nothing is traded at a later moment than
  the prices held; the guard never fires on this clock. It is deliberately not the streamer
  heartbeat's last trade (how far the streamer has read, ahead of what it has written while a
  replay runs faster than real time): that lead depends on the machine's speed, and the same
  replay must give the same trail. A replay host with a clock of its own (a paced replay
  exchange, a test) passes that instead.

Beyond ``guards.stale_market_s`` the guard blocks entries and the loop lets no decision trade;
fresh data lifts the block at the next check (it resumes by itself).

**The volatility halt** (:class:`VolatilityHalt`, block ``VOLATILITY_HALT``). Per symbol, from
the kernel's closed 1m candles: the *realized volatility* is the root mean square of the last
``volatility_window_minutes`` one-minute log returns; its *norm* is the median of the realized
volatilities of the last ``volatility_norm_windows`` whole, non-overlapping windows of that
length (with the defaults: the median hourly volatility of the last day). Entries stop while
any symbol's realized volatility exceeds ``volatility_halt_multiple`` times its norm, judged at
each candle close (market time); the halt lifts once none does. Without a norm (fewer than
:data:`MIN_NORM_WINDOWS` whole windows since the start, warm history included) the halt
cannot judge and does not block.

**The failure breaker** (:class:`FailureBreaker`, block ``REDUCE_ONLY``). Orders the venue
rejects, failed writes and failed reads are counted on the loop's clock; ``failure_limit`` of
them within ``failure_window_s`` put every account in reduce-only mode (exits allowed, entries
refused) until ``failure_quiet_s`` pass without a failure.

What must survive a restart is the breaker's (:class:`GuardState`, :meth:`MarketGuards.state`
and :meth:`MarketGuards.restore`): the staleness is judged again on the first cycle and the
volatility norm is rebuilt from the warm history.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from triplegain_core.model.market import US_PER_SECOND, Candle, datetime_to_us, us_to_datetime
from triplegain_core.risk.entry_blocks import EntryBlocks
from triplegain_core.risk.rules import RiskReason

log = logging.getLogger(__name__)

# The volatility norm needs at least this many whole windows: one or two are no norm.
MIN_NORM_WINDOWS = 3


class GuardSettings(BaseModel):
    """The market guards' limits (``[guards]`` in the configuration).

    ``clock`` is the clock ``triplegain execute`` judges the market's age on: ``wall`` (live)
    or ``market`` (the executor trades a replayed market: its market clock)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stale_market_s: float = Field(default=10.0, gt=0.0, le=3600.0)
    clock: Literal["wall", "market"] = "wall"
    volatility_halt_multiple: float = Field(default=4.0, gt=1.0, le=100.0)
    volatility_window_minutes: int = Field(default=60, ge=5, le=1440)
    volatility_norm_windows: int = Field(default=24, ge=MIN_NORM_WINDOWS, le=720)
    failure_limit: int = Field(default=5, ge=1, le=1000)
    failure_window_s: float = Field(default=60.0, gt=0.0, le=86_400.0)
    failure_quiet_s: float = Field(default=300.0, gt=0.0, le=86_400.0)

    @model_validator(mode="after")
    def _quiet_covers_the_window(self) -> GuardSettings:
        if self.failure_quiet_s < self.failure_window_s:
            raise ValueError(f"guards.failure_quiet_s ({self.failure_quiet_s}) must be at least"
                             f" guards.failure_window_s ({self.failure_window_s}): the breaker would clear"
                             " while the failures that set it still count")
        return self


class MarketClock(Protocol):
    """The clock the loop runs on, in microseconds since the epoch."""

    @property
    def live(self) -> bool:
        """Whether this is the wall clock (decisions then expire on it as well as on market time)."""
        ...

    def now_us(self) -> int:
        """Now on this clock."""
        ...

    def observe(self, market_us: int) -> None:
        """A source announced the market at ``market_us`` (a replay clock moves with it)."""
        ...


def wall_time_us() -> int:
    """The wall clock in microseconds since the epoch."""
    return time.time_ns() // 1000


class WallClock:
    """The live loop's clock: the wall clock (or ``source``, a stand-in a test advances)."""

    live = True

    def __init__(self, source: Callable[[], int] = wall_time_us) -> None:
        self._source = source

    def now_us(self) -> int:
        """The wall clock now."""
        return self._source()

    def observe(self, market_us: int) -> None:
        """The wall clock does not move with the market."""


class ReplayClock:
    """A replay's market clock: the newest market time of the data the executor took (0 before any)."""

    live = False

    def __init__(self) -> None:
        self._now_us = 0

    def now_us(self) -> int:
        """How far the replay has got."""
        return self._now_us

    def observe(self, market_us: int) -> None:
        """Move on to ``market_us`` when it is newer."""
        if market_us > self._now_us:
            self._now_us = market_us


class GuardAction(StrEnum):
    """What a guard did."""

    SET = "set"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class GuardEvent:
    """One guard setting or lifting its block: which, what, when (its clock), and why."""

    guard: RiskReason
    action: GuardAction
    time: datetime
    detail: str


class GuardEventSink(Protocol):
    """Where guard events are kept (the audit sink)."""

    def record_guard_event(self, event: GuardEvent) -> None:
        """Keep one guard event."""
        ...


class GuardState(BaseModel):
    """What the guards keep across a restart: the failure breaker's recent failures (times on
    the loop's clock, microseconds) and whether it holds the accounts in reduce-only mode."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    failure_times_us: tuple[int, ...] = ()
    reduce_only_since_us: int | None = None
    reduce_only_detail: str = ""


class StaleMarketGuard:
    """The market's age against a limit: the newest market moment known, and the clock's now."""

    def __init__(self, max_age_s: float, clock: MarketClock) -> None:
        self.max_age_us = int(max_age_s * US_PER_SECOND)
        self.clock = clock
        self.newest_us: int | None = None
        self.age_us: int | None = None
        # The streamer's latest heartbeat: when it was written (wall clock), and its last trade.
        self.heartbeat_us: int | None = None
        self.streamer_trade_us: int | None = None

    def observe(self, market_us: int) -> None:
        """The executor took market data of ``market_us``."""
        if self.newest_us is None or market_us > self.newest_us:
            self.newest_us = market_us
        self.clock.observe(market_us)

    def observe_streamer(self, heartbeat_us: int | None, last_trade_us: int | None) -> None:
        """The streamer's heartbeat (None: none in the hot state), named when the guard fires.
        Its last trade is not market data the executor holds (the streamer may not have
        written it yet), so it moves neither the market's age nor a replay's clock."""
        self.heartbeat_us = heartbeat_us
        if last_trade_us:
            self.streamer_trade_us = last_trade_us

    def streamer_note(self, now_us: int) -> str:
        """What the streamer's heartbeat says, for people."""
        if self.heartbeat_us is None:
            return "no streamer heartbeat"
        if self.clock.live:
            return f"streamer heartbeat {(now_us - self.heartbeat_us) / US_PER_SECOND:.1f} s old"
        trade = self.streamer_trade_us
        return "streamer has no trade yet" if not trade else f"streamer at {us_to_datetime(trade).isoformat()}"

    def judge(self) -> tuple[int, bool]:
        """(now on the clock, whether the market is older than the limit). No market seen yet is
        not stale: nothing can trade without a price anyway."""
        now_us = self.clock.now_us()
        if self.newest_us is None:
            self.age_us = None
            return now_us, False
        self.age_us = max(0, now_us - self.newest_us)
        return now_us, self.age_us > self.max_age_us


class _SymbolVolatility:
    """One symbol's running realized volatility and its recent window volatilities."""

    __slots__ = ("block_count", "block_sum", "last_close", "last_open_us", "measured", "norm", "recent",
                 "recent_sum", "windows")

    def __init__(self, window: int, norm_windows: int) -> None:
        self.last_open_us = -1
        self.last_close: float | None = None
        self.recent: deque[float] = deque(maxlen=window)  # squared log returns
        self.recent_sum = 0.0
        self.block_sum = 0.0
        self.block_count = 0
        self.windows: deque[float] = deque(maxlen=norm_windows)
        self.norm: float | None = None  # the median of windows, taken when one is added
        # (realized volatility, norm, their ratio) after the latest close, or None while unknown.
        self.measured: tuple[float, float, float] | None = None

    def add(self, close: float, window: int) -> None:
        last, self.last_close = self.last_close, close
        if last is None or not (close > 0 and last > 0 and math.isfinite(close)):
            return
        # In locals: this runs for every candle of every symbol.
        squared = math.log(close / last) ** 2
        recent, recent_sum = self.recent, self.recent_sum
        if len(recent) == window:
            recent_sum -= recent[0]
        recent.append(squared)
        recent_sum += squared
        self.block_sum += squared
        self.block_count += 1
        if self.block_count == window:
            self.windows.append(math.sqrt(self.block_sum / window))
            self.norm = statistics.median(self.windows)
            self.block_sum, self.block_count = 0.0, 0
            # Summed afresh once a window: a running sum would drift with rounding.
            recent_sum = math.fsum(recent)
        self.recent_sum = recent_sum
        # Measured once per close, not at each judgement.
        norm = self.norm
        if len(recent) < window or norm is None or norm <= 0 or len(self.windows) < MIN_NORM_WINDOWS:
            self.measured = None
        else:
            realized = math.sqrt((0.0 if recent_sum < 0.0 else recent_sum) / window)  # max(sum, 0.0)
            self.measured = realized, norm, realized / norm


class VolatilityHalt:
    """Realized 1m volatility per symbol against the median of its recent window volatilities."""

    def __init__(self, settings: GuardSettings, symbols: Iterable[str]) -> None:
        self.multiple = settings.volatility_halt_multiple
        self.window = settings.volatility_window_minutes
        self._symbols = {s: _SymbolVolatility(self.window, settings.volatility_norm_windows) for s in symbols}

    def add(self, candles: Iterable[Candle]) -> None:
        """Take the next closed 1m candles of the traded symbols (others, and older ones, are ignored)."""
        symbols, window = self._symbols, self.window
        for candle in candles:
            state = symbols.get(candle.symbol)
            if state is not None and candle.timeframe == "1m" and candle.open_time_us > state.last_open_us:
                state.last_open_us = candle.open_time_us
                state.add(candle.close, window)

    def beyond(self) -> list[str]:
        """A sentence per symbol whose realized volatility is beyond the multiple of its norm."""
        found = []
        for symbol, state in self._symbols.items():
            measured = state.measured
            if measured is not None and measured[2] > self.multiple:
                realized, norm, ratio = measured
                found.append(f"{symbol} realized volatility {realized:.3g}/min over {self.window} min is"
                             f" {ratio:.1f}x its norm {norm:.3g} (limit {self.multiple:g}x)")
        return found

    def ratios(self) -> dict[str, float]:
        """Each symbol's realized volatility over its norm, where both are known."""
        return {symbol: measured[2] for symbol, state in self._symbols.items()
                if (measured := state.measured) is not None}


class FailureBreaker:
    """Exchange and server failures counted in a window; reduce-only until a quiet period."""

    def __init__(self, settings: GuardSettings) -> None:
        self.limit = settings.failure_limit
        self.window_us = int(settings.failure_window_s * US_PER_SECOND)
        self.quiet_us = int(settings.failure_quiet_s * US_PER_SECOND)
        self.times: deque[int] = deque()
        self.last_us: int | None = None
        self.total = 0

    def record(self, at_us: int) -> int:
        """Count one failure at ``at_us``; the failures within the window."""
        self.times.append(at_us)
        self.last_us = at_us if self.last_us is None else max(self.last_us, at_us)
        self.total += 1
        return self.within(at_us)

    def within(self, now_us: int) -> int:
        """The failures within the window ending ``now_us`` (older ones are forgotten)."""
        while self.times and self.times[0] <= now_us - self.window_us:
            self.times.popleft()
        return len(self.times)

    def quiet(self, now_us: int) -> bool:
        """Whether the quiet period passed since the last failure."""
        return self.last_us is None or now_us - self.last_us >= self.quiet_us


class BreakerFailure(StrEnum):
    """What failed, for the failure breaker."""

    VENUE_REJECTION = "venue_rejection"
    WRITE = "write"
    READ = "read"


class MarketGuards:
    """The three guards over one kernel's entry blocks, their events written to ``sink``."""

    def __init__(self, settings: GuardSettings, symbols: Iterable[str], blocks: EntryBlocks,
                 sink: GuardEventSink, clock: MarketClock | None = None) -> None:
        self.settings = settings
        self.blocks = blocks
        self._sink = sink
        self.stale = StaleMarketGuard(settings.stale_market_s, clock or ReplayClock())
        self.volatility = VolatilityHalt(settings, symbols)
        self.breaker = FailureBreaker(settings)
        self.events = 0
        self.failures: dict[str, int] = {}

    @property
    def clock(self) -> MarketClock:
        """The clock the stale-market guard and the breaker judge on."""
        return self.stale.clock

    def check_market(self) -> bool:
        """Judge the market's age now; set or lift ``STALE_MARKET``. Whether it is stale."""
        now_us, stale = self.stale.judge()
        if stale:
            age_s = (self.stale.age_us or 0) / US_PER_SECOND
            self._set(RiskReason.STALE_MARKET, now_us,
                      f"market {age_s:.1f} s old (limit {self.settings.stale_market_s:g} s); newest market"
                      f" data at {us_to_datetime(self.stale.newest_us or 0).isoformat()};"
                      f" {self.stale.streamer_note(now_us)}")
        else:
            self._clear(RiskReason.STALE_MARKET, now_us, "fresh market data")
        return stale

    def check_volatility(self, at_us: int) -> None:
        """Judge the realized volatility at market time ``at_us``; set or lift ``VOLATILITY_HALT``."""
        beyond = self.volatility.beyond()
        if beyond:
            self._set(RiskReason.VOLATILITY_HALT, at_us, "; ".join(beyond))
        else:
            self._clear(RiskReason.VOLATILITY_HALT, at_us, "realized volatility back within its norm")

    def record_failure(self, kind: BreakerFailure, detail: str, count: int = 1) -> None:
        """Count ``count`` failures of ``kind`` now (the loop's clock); at the limit within the
        window, every account goes reduce-only."""
        now_us = self.clock.now_us()
        self.failures[kind.value] = self.failures.get(kind.value, 0) + count
        within = 0
        for _ in range(count):
            within = self.breaker.record(now_us)
        log.warning("failure counted by the breaker (%s): %s; %d within %g s", kind.value, detail, within,
                    self.settings.failure_window_s)
        if within >= self.breaker.limit:
            self._set(RiskReason.REDUCE_ONLY, now_us,
                      f"{within} failures within {self.settings.failure_window_s:g} s (limit"
                      f" {self.breaker.limit}), the last a {kind.value}: {detail}")

    def check_failures(self) -> None:
        """Lift ``REDUCE_ONLY`` once the quiet period passed without a failure."""
        if self.blocks.get(RiskReason.REDUCE_ONLY) is None:
            return
        now_us = self.clock.now_us()
        if self.breaker.quiet(now_us):
            self._clear(RiskReason.REDUCE_ONLY, now_us,
                        f"no failure for {self.settings.failure_quiet_s:g} s")

    def state(self) -> GuardState:
        """What must survive a restart (see :class:`GuardState`)."""
        block = self.blocks.get(RiskReason.REDUCE_ONLY)
        return GuardState(failure_times_us=tuple(self.breaker.times),
                          reduce_only_since_us=None if block is None else datetime_to_us(block.since),
                          reduce_only_detail="" if block is None else block.detail)

    def restore(self, state: GuardState) -> None:
        """Take the state a previous run kept: its failures count on, its reduce-only mode holds."""
        for at_us in state.failure_times_us:
            self.breaker.record(at_us)
        if state.reduce_only_since_us is not None:
            self.blocks.set(RiskReason.REDUCE_ONLY, us_to_datetime(state.reduce_only_since_us),
                            state.reduce_only_detail)

    def _set(self, reason: RiskReason, at_us: int, detail: str) -> None:
        when = us_to_datetime(at_us)
        if not self.blocks.set(reason, when, detail):
            return
        log.warning("entries blocked (%s): %s", reason.value, detail)
        self._record(GuardEvent(reason, GuardAction.SET, when, detail))

    def _clear(self, reason: RiskReason, at_us: int, detail: str) -> None:
        if self.blocks.get(reason) is None:
            return
        lifted = self.blocks.clear(reason)
        assert lifted is not None
        log.warning("entries allowed again (%s lifted): %s", reason.value, detail)
        self._record(GuardEvent(reason, GuardAction.CLEARED, us_to_datetime(at_us), detail))

    def _record(self, event: GuardEvent) -> None:
        self.events += 1
        self._sink.record_guard_event(event)
