"""Building blocks for a strategy's ``SIGNAL_CANDIDATES`` (see :mod:`.interface`).

A candidate rule needs a look-back (the candles a channel, a mean or a median is taken over): a
row without the whole look-back behind it cannot be judged in bulk, so it is marked (the kernel
asks ``generate_signal`` there, which decides as it always does).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from triplegain_core.marketdata.snapshot import CandleWindow


def rows_after_lookback(candles: CandleWindow, first: int, lookback: int,
                        rule: Callable[[int], np.ndarray]) -> np.ndarray:
    """One bool per row of ``candles`` from ``first`` on: True on every row with fewer than
    ``lookback`` candles before it, then ``rule(start)``, the rule's bools for the rows from
    ``start`` (the first row with the whole look-back, never before ``first``) to the end."""
    rows = np.ones(len(candles) - first, dtype=bool)
    start = max(first, lookback)
    if start < len(candles):
        rows[start - first:] = rule(start)
    return rows


def windows_before(values: np.ndarray, period: int, start: int) -> np.ndarray:
    """For each row from ``start`` on, the ``period`` values before it (not the row's own), one
    window per line; ``start`` must be at least ``period``."""
    return np.lib.stride_tricks.sliding_window_view(values[:-1], period)[start - period:]


def windows_through(values: np.ndarray, period: int, start: int) -> np.ndarray:
    """For each row from ``start`` on, the ``period`` values ending at the row's own, one window
    per line; ``start`` must be at least ``period - 1``."""
    return np.lib.stride_tricks.sliding_window_view(values, period)[start - period + 1:]


def windowed_ema(windows: np.ndarray, period: int) -> np.ndarray:
    """TA-Lib's EMA along each line of ``windows``, computed as TA-Lib computes it (seeded with
    the mean of the first ``period`` values, then ``(value - ema) * k + ema``): its values from
    column ``period - 1`` on, one line per window. The seed's sum may round otherwise than
    TA-Lib's in the last bit: a rule on it marks the near cases."""
    k = 2.0 / (period + 1)
    ema = windows[:, :period].mean(axis=1)
    values = np.empty((windows.shape[0], windows.shape[1] - period + 1))
    values[:, 0] = ema
    for column in range(period, windows.shape[1]):
        ema = (windows[:, column] - ema) * k + ema
        values[:, column - period + 1] = ema
    return values
