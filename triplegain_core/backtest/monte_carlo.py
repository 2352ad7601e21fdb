"""Monte Carlo of a backtest's results, seeded: how its final equity and drawdown could have
come out had the same trades come in another order, or the same market in other stretches.

- :func:`reshuffle_trades`: each run is a random order of the trades' returns (compounded from
  the starting equity). The final equity cannot change (a product does not depend on its order);
  the path, and so the drawdown, does.
- :func:`block_bootstrap`: each run draws the period returns again in circular blocks of
  ``block_length`` (keeping the dependence inside a block), as many as there were.

The same seed gives the same runs, on any machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Percentiles:
    """The 5th, 50th and 95th percentiles of one outcome over the runs."""

    p5: float
    p50: float
    p95: float


@dataclass(frozen=True, slots=True)
class MonteCarloResult:
    """Each run's final equity and maximum drawdown (a fraction of the peak), and the paths."""

    final_equity: np.ndarray
    max_drawdown: np.ndarray
    paths: np.ndarray
    seed: int

    def equity_percentiles(self) -> Percentiles:
        """Percentiles of the final equity."""
        return _percentiles(self.final_equity)

    def drawdown_percentiles(self) -> Percentiles:
        """Percentiles of the maximum drawdown."""
        return _percentiles(self.max_drawdown)

    def probability_of_drawdown(self, depth: float = 0.10) -> float:
        """The share of runs whose maximum drawdown reached ``depth`` (0.10: a 10 % drawdown)."""
        return float(np.mean(self.max_drawdown >= depth))


def reshuffle_trades(trade_returns: Sequence[float] | np.ndarray, start_equity: float, runs: int,
                     seed: int) -> MonteCarloResult:
    """``runs`` random orders of the trades' fractional returns, compounded from ``start_equity``."""
    returns = _checked(trade_returns, runs, start_equity)
    rng = np.random.default_rng(seed)
    orders = rng.permuted(np.tile(returns, (runs, 1)), axis=1)
    return _result(orders, start_equity, seed)


def block_bootstrap(period_returns: Sequence[float] | np.ndarray, block_length: int, start_equity: float,
                    runs: int, seed: int) -> MonteCarloResult:
    """``runs`` resamplings of the period returns in circular blocks of ``block_length``."""
    returns = _checked(period_returns, runs, start_equity)
    if not 1 <= block_length <= len(returns):
        raise ValueError(f"block_length must be within 1..{len(returns)} (the returns), got {block_length}")
    rng = np.random.default_rng(seed)
    count = len(returns)
    blocks = -(-count // block_length)
    starts = rng.integers(0, count, size=(runs, blocks))
    # Each block continues from its start, wrapping around the end (circular).
    indices = (starts[:, :, None] + np.arange(block_length)).reshape(runs, -1)[:, :count] % count
    return _result(returns[indices], start_equity, seed)


def _checked(returns: Sequence[float] | np.ndarray, runs: int, start_equity: float) -> np.ndarray:
    values = np.asarray(returns, dtype=float)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError("no returns to resample")
    if not np.isfinite(values).all() or (values <= -1).any():
        raise ValueError("returns must be finite and above -100 %")
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    if not start_equity > 0:
        raise ValueError(f"start_equity must be positive, got {start_equity}")
    return values


def _result(returns: np.ndarray, start_equity: float, seed: int) -> MonteCarloResult:
    paths = start_equity * np.cumprod(1 + returns, axis=1)
    with_start = np.concatenate([np.full((len(paths), 1), start_equity), paths], axis=1)
    peaks = np.maximum.accumulate(with_start, axis=1)
    drawdowns = ((peaks - with_start) / peaks).max(axis=1)
    return MonteCarloResult(final_equity=paths[:, -1], max_drawdown=drawdowns, paths=with_start, seed=seed)


def _percentiles(values: np.ndarray) -> Percentiles:
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return Percentiles(float(p5), float(p50), float(p95))
