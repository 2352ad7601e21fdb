"""Sharpe intervals, the deflated Sharpe ratio, PBO and Monte Carlo: values that can be checked."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from triplegain_core.backtest.monte_carlo import block_bootstrap, reshuffle_trades
from triplegain_core.backtest.statistics import (
    Moments,
    deflated_sharpe_ratio,
    expected_maximum_sharpe,
    moments,
    probability_of_backtest_overfitting,
    sharpe_interval,
)


def test_the_sharpe_interval_holds_its_estimate_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(3)
    short, long = rng.normal(0.001, 0.01, 100), rng.normal(0.001, 0.01, 10_000)
    a, b = sharpe_interval(short, 252), sharpe_interval(long, 252)
    assert a.low < a.sharpe < a.high and b.low < b.sharpe < b.high
    assert (b.high - b.low) < (a.high - a.low) / 5  # 100 times the data: ~10 times narrower
    # Normal returns: SE^2 = (1 + SR^2 / 2) / (n - 1) on the per-period SR (kurtosis 3, no skew).
    m = moments(long)
    expected_half = 1.959963984540054 * math.sqrt((1 - m.skew * m.sharpe + (m.kurtosis - 1) / 4 * m.sharpe ** 2)
                                                  / (len(long) - 1)) * math.sqrt(252)
    assert (b.high - b.low) / 2 == pytest.approx(expected_half)
    assert abs(m.skew) < 0.1 and m.kurtosis == pytest.approx(3.0, abs=0.15)


def test_fat_tails_widen_the_interval() -> None:
    rng = np.random.default_rng(5)
    normal = rng.normal(0.002, 0.01, 2000)
    fat = rng.standard_t(3, 2000) * 0.01 / math.sqrt(3) + 0.002  # same variance, fat tails
    assert moments(fat).kurtosis > moments(normal).kurtosis + 2
    width = [i.high - i.low for i in (sharpe_interval(normal, 252), sharpe_interval(fat, 252))]
    assert width[1] > width[0]


def test_too_little_or_flat_data_is_named() -> None:
    with pytest.raises(ValueError, match="at least 3 returns"):
        moments([0.1, 0.2])
    with pytest.raises(ValueError, match="never vary"):
        moments([0.01] * 10)
    with pytest.raises(ValueError, match="confidence must be within"):
        sharpe_interval([0.01, 0.02, -0.01], 252, confidence=1.5)


def test_the_deflated_sharpe_ratio_against_a_hand_computed_case() -> None:
    # Bailey and López de Prado's worked example: SR 0.1 per period (annual ~1.58 on 250 days),
    # 1,250 returns, skew -3, kurtosis 10, 100 trials whose Sharpe ratios vary by 0.5 / 250.
    m = Moments(sharpe=0.1, skew=-3.0, kurtosis=10.0, periods=1250)
    benchmark = expected_maximum_sharpe(100, 0.5 / 250)
    assert benchmark == pytest.approx(0.1132, abs=5e-4)
    z = (0.1 - benchmark) * math.sqrt(1249) / math.sqrt(1 + 3 * 0.1 + 9 / 4 * 0.01)
    assert deflated_sharpe_ratio(m, 100, 0.5 / 250) == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))))
    # One trial: nothing to deflate against; more trials: a lower probability.
    assert expected_maximum_sharpe(1, 0.5) == 0.0
    assert deflated_sharpe_ratio(m, 10, 0.5 / 250) > deflated_sharpe_ratio(m, 1000, 0.5 / 250)


def test_pbo_is_about_a_half_for_noise_and_near_zero_for_a_truly_better_configuration() -> None:
    rng = np.random.default_rng(11)
    noise = rng.normal(0, 0.01, size=(1600, 20))
    assert 0.25 < probability_of_backtest_overfitting(noise, 10).probability < 0.75
    skilled = noise.copy()
    skilled[:, 7] += 0.004  # one configuration better in every stretch
    result = probability_of_backtest_overfitting(skilled, 10)
    assert result.probability < 0.05 and result.splits == math.comb(10, 5) and len(result.logits) == result.splits


def test_pbo_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="blocks must be even"):
        probability_of_backtest_overfitting(np.zeros((20, 3)), 5)
    with pytest.raises(ValueError, match="at least 2 configurations"):
        probability_of_backtest_overfitting(np.zeros((20, 1)), 4)
    with pytest.raises(ValueError, match="need at least as many periods"):
        probability_of_backtest_overfitting(np.zeros((3, 3)), 4)


def test_reshuffled_trades_keep_the_final_equity_and_vary_the_drawdown() -> None:
    rng = np.random.default_rng(2)
    trades = rng.normal(0.002, 0.02, 300)
    result = reshuffle_trades(trades, 1000.0, runs=2000, seed=42)
    assert np.allclose(result.final_equity, 1000.0 * np.prod(1 + trades))
    assert result.max_drawdown.std() > 0
    dd = result.drawdown_percentiles()
    assert dd.p5 <= dd.p50 <= dd.p95
    assert 0.0 <= result.probability_of_drawdown(0.10) <= 1.0
    same = reshuffle_trades(trades, 1000.0, runs=2000, seed=42)
    other = reshuffle_trades(trades, 1000.0, runs=2000, seed=43)
    assert np.array_equal(same.max_drawdown, result.max_drawdown)
    assert not np.array_equal(other.max_drawdown, result.max_drawdown)


def test_the_block_bootstrap_resamples_whole_blocks_with_the_same_mean() -> None:
    rng = np.random.default_rng(8)
    returns = rng.normal(0.0005, 0.01, 1000)
    result = block_bootstrap(returns, 20, 1000.0, runs=3000, seed=1)
    assert result.paths.shape == (3000, 1001)
    period = result.paths[:, 1:] / result.paths[:, :-1] - 1
    assert period.mean() == pytest.approx(returns.mean(), abs=2e-4)
    # A run is made of stretches of the original series: consecutive draws follow each other.
    index = {value: i for i, value in enumerate(returns)}
    first = [index[min(returns, key=lambda r: abs(r - v))] for v in period[0, :20]]
    assert all((b - a) % len(returns) == 1 for a, b in itertools.pairwise(first))
    eq = result.equity_percentiles()
    assert eq.p5 < eq.p50 < eq.p95
    with pytest.raises(ValueError, match="block_length must be within"):
        block_bootstrap(returns, 0, 1000.0, runs=10, seed=1)
    with pytest.raises(ValueError, match="above -100 %"):
        reshuffle_trades([0.1, -1.5], 1000.0, runs=10, seed=1)
