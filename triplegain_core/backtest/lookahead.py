"""Look-ahead and warm-up analysis of a strategy (built-in or plugin), on a candle history.

**Look-ahead.** The strategy is replayed over the whole history as the runner feeds it (each
decision sees the last ``window`` candles up to that moment, its state carried along); then each
signal it fired (up to ``max_signals`` of them, spread evenly) is recomputed on the history
*truncated at its decision time* (nothing after that candle exists at all). Any difference is
look-ahead: the strategy read something the market had not printed yet, e.g. the array a window
is a view of (``window.close.base`` holds the whole history, future included).

**Warm-up.** The strategy is replayed over the same evaluation span twice, with ``warmup`` and
with ``2 * warmup`` candles of history before it; a signal in the span that differs means the
strategy depends on how much history it was given (state or indicators seeded from its first
candle). The platform's indicator set (:func:`~triplegain_core.analysis.indicators.compute_features`)
is compared the same way on the strategy's timeframe: an indicator whose values in the span differ
(relative to the larger of the two, beyond ``1e-9``) needs more than ``warmup`` candles to settle
(cumulative ones, OBV and the daily VWAP, never do).

Candles are the strategy's own timeframe, resampled from 1m as the live market does. A
strategy that reads more than candles (books, trades, time) cannot be replayed from candles alone
and is reported as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from triplegain_core.analysis.indicators import compute_features
from triplegain_core.marketdata.snapshot import CandleWindow
from triplegain_core.marketdata.timeframes import resample_candles
from triplegain_core.model.market import Candle, datetime_to_us
from triplegain_core.model.signals import Signal
from triplegain_core.strategies.registry import LoadedStrategy
from triplegain_core.strategies.replay import replay_candles
from triplegain_core.strategies.selection import timeframe_of

# A strategy that names no window is shown this many candles at each decision.
DEFAULT_WINDOW = 300
# Indicator values closer than this (relative) are the same value.
INDICATOR_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class SignalDifference:
    """A decision that came out differently: when, and what each run said (``-``: nothing)."""

    time_us: int
    first: str
    second: str


@dataclass(frozen=True, slots=True)
class LookaheadReport:
    """The look-ahead check of one strategy on one symbol."""

    strategy: str
    symbol: str
    timeframe: str
    signals: int
    checked: int
    differences: tuple[SignalDifference, ...]
    not_checkable: str | None = None

    @property
    def clean(self) -> bool:
        """Checked, and no signal changed when the future was cut away."""
        return self.not_checkable is None and not self.differences

    def summary(self) -> str:
        """One line for people."""
        if self.not_checkable is not None:
            return f"{self.strategy} {self.symbol}: not checkable from candles: {self.not_checkable}"
        name = f"{self.strategy} {self.symbol} {self.timeframe}"
        if self.clean:
            return f"{name}: no look-ahead ({self.checked} of {self.signals} signals recomputed on the history cut" \
                   " at their decision)"
        return f"{name}: LOOK-AHEAD: {len(self.differences)} of {self.checked} signals change when the future is" \
               " cut away"


@dataclass(frozen=True, slots=True)
class WarmupReport:
    """The warm-up check of one strategy on one symbol."""

    strategy: str
    symbol: str
    timeframe: str
    warmup: int
    compared: int
    differences: tuple[SignalDifference, ...]
    unsettled_indicators: tuple[tuple[str, float], ...]
    not_checkable: str | None = None

    @property
    def clean(self) -> bool:
        """Checked, and no signal changed with twice the warm-up (indicators are reported apart)."""
        return self.not_checkable is None and not self.differences

    def summary(self) -> str:
        """One line for people."""
        if self.not_checkable is not None:
            return f"{self.strategy} {self.symbol}: not checkable from candles: {self.not_checkable}"
        indicators = ", ".join(f"{name} ({gap:.1e})" for name, gap in self.unsettled_indicators) or "none"
        verdict = "signals unchanged" if self.clean else \
            f"WARM-UP DEPENDENT: {len(self.differences)} of {self.compared} decisions change"
        return f"{self.strategy} {self.symbol} {self.timeframe}, warm-up {self.warmup} vs {2 * self.warmup}:" \
               f" {verdict}; indicators not settled after {self.warmup}: {indicators}"


def lookahead_check(strategy: LoadedStrategy, candles: list[Candle], max_signals: int = 50) -> LookaheadReport:
    """See the module's docstring; ``candles``: one symbol's 1m candles, oldest first."""
    symbol = candles[0].symbol
    timeframe, reason = _timeframe(strategy)
    if reason is not None:
        return LookaheadReport(strategy.name, symbol, timeframe, 0, 0, (), reason)
    history = _window(candles, timeframe)
    size = _window_size(strategy)
    full = replay_candles(strategy, history, size)
    step = max(1, math.ceil(len(full) / max_signals))
    differences = []
    checked = 0
    for index, signal in full[::step]:
        checked += 1
        cut = replay_candles(strategy, _head(history, index + 1), size)
        again = cut[-1][1] if cut and cut[-1][0] == index else None
        if _said(again) != _said(signal):
            differences.append(SignalDifference(int(history.open_time_us[index]), _said(signal), _said(again)))
    return LookaheadReport(strategy.name, symbol, timeframe, len(full), checked, tuple(differences))


def warmup_check(strategy: LoadedStrategy, candles: list[Candle], warmup: int | None = None) -> WarmupReport:
    """See the module's docstring; ``warmup`` defaults to the strategy's window."""
    symbol = candles[0].symbol
    timeframe, reason = _timeframe(strategy)
    size = _window_size(strategy)
    warm = warmup or size
    if reason is not None:
        return WarmupReport(strategy.name, symbol, timeframe, warm, 0, (), (), reason)
    history = _window(candles, timeframe)
    if len(history) <= 2 * warm:
        raise ValueError(f"{len(history)} {timeframe} candles of {symbol}: a warm-up check of {warm} needs more"
                         f" than {2 * warm}")
    short = {index + warm: s for index, s in replay_candles(strategy, _tail_from(history, warm), size)}
    long = dict(replay_candles(strategy, history, size))
    span = range(2 * warm, len(history))
    differences = tuple(SignalDifference(int(history.open_time_us[i]), _said(long.get(i)), _said(short.get(i)))
                        for i in span if _said(long.get(i)) != _said(short.get(i)))
    return WarmupReport(strategy.name, symbol, timeframe, warm, len(span), differences,
                        _unsettled(history, warm))


def _timeframe(strategy: LoadedStrategy) -> tuple[str, str | None]:
    extra = strategy.reads - {"candles"}
    if extra:
        return "-", f"reads {', '.join(sorted(extra))}"
    return timeframe_of(strategy) or "1m", None


def _window_size(strategy: LoadedStrategy) -> int:
    window = getattr(strategy.config, "window", None)
    return window if isinstance(window, int) and window > 0 else DEFAULT_WINDOW


def _window(candles: list[Candle], timeframe: str) -> CandleWindow:
    """The 1m candles as a window of ``timeframe`` (closed candles only, as the live market builds them)."""
    frame = pd.DataFrame([(c.open_time, c.open, c.high, c.low, c.close, c.volume) for c in candles],
                         columns=["open_time", "open", "high", "low", "close", "volume"])
    bars = frame if timeframe == "1m" else resample_candles(frame, timeframe)
    times = [datetime_to_us(t.to_pydatetime()) for t in bars["open_time"]]
    return CandleWindow.from_arrays(candles[0].symbol, timeframe, times, *(bars[c].to_numpy(dtype=float)
                                                                          for c in ("open", "high", "low", "close",
                                                                                    "volume")))


def _head(history: CandleWindow, count: int) -> CandleWindow:
    """The first ``count`` candles, as a history of its own (copies: nothing after them exists)."""
    return CandleWindow.from_arrays(history.symbol, history.timeframe, history.open_time_us[:count],
                                    history.open[:count], history.high[:count], history.low[:count],
                                    history.close[:count], history.volume[:count])


def _tail_from(history: CandleWindow, start: int) -> CandleWindow:
    return CandleWindow.from_arrays(history.symbol, history.timeframe, history.open_time_us[start:],
                                    history.open[start:], history.high[start:], history.low[start:],
                                    history.close[start:], history.volume[start:])


def _unsettled(history: CandleWindow, warm: int) -> tuple[tuple[str, float], ...]:
    """The indicators whose values over the span differ between a warm-up of ``warm`` and of
    ``2 * warm`` candles, with their largest relative difference."""
    def features(start: int) -> dict[str, np.ndarray]:
        return compute_features(history.open_time_us[start:], history.high[start:], history.low[start:],
                                history.close[start:], history.volume[start:])

    short, long = features(warm), features(0)
    found = []
    for name, values in long.items():
        a, b = values[2 * warm:], short[name][warm:]
        known = np.isfinite(a) & np.isfinite(b)
        if np.isfinite(a).sum() != np.isfinite(b).sum():
            found.append((name, math.inf))  # one run still warming up where the other is not
            continue
        if not known.any():
            continue
        scale = np.maximum(np.maximum(np.abs(a[known]), np.abs(b[known])), 1e-300)
        gap = float(np.max(np.abs(a[known] - b[known]) / scale))
        if gap > INDICATOR_TOLERANCE:
            found.append((name, gap))
    return tuple(sorted(found, key=lambda item: -item[1]))


def _said(signal: Signal | None) -> str:
    """A signal as what it asks for (its id aside: the same decision, whichever run made it)."""
    if signal is None:
        return "-"
    return f"{signal.action.value} entry {signal.entry!r} stop {signal.stop_loss!r} target {signal.take_profit!r}" \
           f" strength {signal.strength!r}"
