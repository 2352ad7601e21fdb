"""Statistics that do not fool their reader: how sure a Sharpe ratio is, how much of it survives
the number of strategies tried, and how likely the best-looking choice was overfitted.

- :func:`sharpe_interval`: the Sharpe ratio with a confidence interval from its asymptotic
  standard error under non-normal returns (Lo 2002; Mertens 2002):
  ``SE(SR)^2 = (1 - skew * SR + (kurtosis - 1) / 4 * SR^2) / (n - 1)`` on the per-period SR.
- :func:`deflated_sharpe_ratio` (Bailey and López de Prado 2014): the probability that the
  true Sharpe exceeds the best one expected from ``trials`` independent trials of no skill.
- :func:`probability_of_backtest_overfitting` (Bailey, Borwein, López de Prado and Zhu 2015):
  combinatorially symmetric cross-validation of the choice of the best configuration.

Sharpe ratios inside are per period (not annualized) unless a name says otherwise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# The Euler-Mascheroni constant, in the expected maximum of independent normal draws.
EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class SharpeInterval:
    """An annualized Sharpe ratio and its confidence interval."""

    sharpe: float
    low: float
    high: float
    confidence: float
    periods: int


@dataclass(frozen=True, slots=True)
class Moments:
    """The per-period Sharpe ratio, skewness and (non-excess) kurtosis of a return series."""

    sharpe: float
    skew: float
    kurtosis: float
    periods: int


def moments(returns: Sequence[float] | np.ndarray) -> Moments:
    """The per-period Sharpe ratio, skewness and kurtosis of ``returns``; ValueError with fewer
    than 3 returns or none varying (no ratio to speak of)."""
    values = np.asarray(returns, dtype=float)
    if len(values) < 3:
        raise ValueError(f"a Sharpe ratio needs at least 3 returns, got {len(values)}")
    deviation = values.std(ddof=1)
    # Rounding leaves a constant series a deviation of ~1e-18, not 0.
    if not deviation > 1e-12 * float(np.abs(values).max()):
        raise ValueError("the returns never vary: no Sharpe ratio")
    centred = values - values.mean()
    population = centred.std(ddof=0)
    return Moments(sharpe=float(values.mean() / deviation), skew=float((centred ** 3).mean() / population ** 3),
                   kurtosis=float((centred ** 4).mean() / population ** 4), periods=len(values))


def sharpe_standard_error(m: Moments) -> float:
    """The standard error of the per-period Sharpe ratio, skewness and kurtosis allowed for."""
    variance = (1 - m.skew * m.sharpe + (m.kurtosis - 1) / 4 * m.sharpe ** 2) / (m.periods - 1)
    return math.sqrt(max(variance, 0.0))


def sharpe_interval(returns: Sequence[float] | np.ndarray, periods_per_year: float,
                    confidence: float = 0.95) -> SharpeInterval:
    """The annualized Sharpe ratio of ``returns`` with its ``confidence`` interval (see the module)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    m = moments(returns)
    half = _NORMAL.inv_cdf(0.5 + confidence / 2) * sharpe_standard_error(m)
    scale = math.sqrt(periods_per_year)
    return SharpeInterval(m.sharpe * scale, (m.sharpe - half) * scale, (m.sharpe + half) * scale, confidence,
                          m.periods)


def expected_maximum_sharpe(trials: int, variance: float) -> float:
    """The Sharpe ratio the best of ``trials`` independent no-skill trials reaches on average,
    their Sharpe ratios varying by ``variance`` (per period)."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    if trials == 1:
        return 0.0
    return math.sqrt(variance) * ((1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / trials)
                                  + EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (trials * math.e)))


def deflated_sharpe_ratio(m: Moments, trials: int, variance_across_trials: float) -> float:
    """The probability (0..1) that the true Sharpe ratio of the returns ``m`` describes beats the
    best of ``trials`` no-skill trials whose per-period Sharpe ratios vary by ``variance_across_trials``."""
    benchmark = expected_maximum_sharpe(trials, variance_across_trials)
    denominator = math.sqrt(max(1 - m.skew * m.sharpe + (m.kurtosis - 1) / 4 * m.sharpe ** 2, 1e-12))
    return _NORMAL.cdf((m.sharpe - benchmark) * math.sqrt(m.periods - 1) / denominator)


@dataclass(frozen=True, slots=True)
class Overfitting:
    """The result of combinatorially symmetric cross-validation: the probability of backtest
    overfitting, and the logit of the in-sample best's out-of-sample rank in each split."""

    probability: float
    logits: tuple[float, ...]
    splits: int


def probability_of_backtest_overfitting(performance: np.ndarray, blocks: int = 16) -> Overfitting:
    """PBO of choosing the best of N configurations by Sharpe, from their per-period returns
    (``performance``: T periods by N configurations).

    The T rows are cut into ``blocks`` contiguous blocks; each way of taking half the blocks as
    in-sample (the rest out-of-sample) picks the configuration with the best in-sample Sharpe
    and ranks it out-of-sample: ``w`` its relative rank in (0, 1), ``logit = ln(w / (1 - w))``.
    PBO is the share of splits whose logit is at most 0: the in-sample best did no better than
    the median out of sample.
    """
    table = np.asarray(performance, dtype=float)
    if table.ndim != 2 or table.shape[1] < 2:
        raise ValueError(f"performance must be periods by at least 2 configurations, got shape {table.shape}")
    if blocks < 2 or blocks % 2:
        raise ValueError(f"blocks must be even and at least 2, got {blocks}")
    if blocks > table.shape[0]:
        raise ValueError(f"{blocks} blocks need at least as many periods, got {table.shape[0]}")
    # Each block's count, sums and sums of squares: a split's Sharpe ratios come from these
    # (C(16, 8) = 12,870 splits stay cheap over a year of minutes).
    parts = np.array_split(table, blocks)
    counts = np.array([len(part) for part in parts], dtype=float)
    sums = np.stack([part.sum(axis=0) for part in parts])
    squares = np.stack([(part ** 2).sum(axis=0) for part in parts])
    configurations = table.shape[1]
    logits = []
    every = np.arange(blocks)
    for chosen in itertools.combinations(range(blocks), blocks // 2):
        inside = np.zeros(blocks, dtype=bool)
        inside[list(chosen)] = True
        best = int(np.argmax(_sharpes(counts[inside], sums[inside], squares[inside])))
        outside = every[~inside]
        out = _sharpes(counts[outside], sums[outside], squares[outside])
        # Relative rank of the chosen configuration out of sample, in (0, 1) (ties share).
        rank = (np.sum(out < out[best]) + 0.5 * (np.sum(out == out[best]) - 1) + 1) / (configurations + 1)
        logits.append(math.log(rank / (1 - rank)))
    return Overfitting(sum(value <= 0 for value in logits) / len(logits), tuple(logits), len(logits))


def _sharpes(counts: np.ndarray, sums: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Per configuration, the Sharpe ratio of the periods of the given blocks (-inf where flat)."""
    n = counts.sum()
    total, total_squares = sums.sum(axis=0), squares.sum(axis=0)
    variance = np.maximum((total_squares - total ** 2 / n) / (n - 1), 0.0)
    sharpes = np.full(sums.shape[1], -np.inf)
    np.divide(total / n, np.sqrt(variance), out=sharpes, where=variance > 0)
    return sharpes
