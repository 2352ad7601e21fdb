"""How much to trust a backtest's best account: its Sharpe ratio's interval, what survives the
number of accounts tried, how likely choosing it was overfitting, and how its results could have
come out (Monte Carlo).

The trading accounts (not the baselines) are the trials: picking the best of them is a
selection, so its Sharpe ratio is deflated for their number (or for ``trials`` when more were
tried, e.g. a walk-forward's parameter sets) and the choice is cross-validated (PBO) on their
minute returns. The best account is the one with the best Sharpe ratio among those that closed
a trade. Its closed trades'
returns (PnL over the equity at entry) are reshuffled, and its hourly returns bootstrapped in
day-long blocks, with a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triplegain_core.backtest.engine import AccountKind
from triplegain_core.backtest.leaderboard import Scorecard
from triplegain_core.backtest.monte_carlo import MonteCarloResult, block_bootstrap, reshuffle_trades
from triplegain_core.backtest.statistics import (
    Overfitting,
    SharpeInterval,
    deflated_sharpe_ratio,
    moments,
    probability_of_backtest_overfitting,
    sharpe_interval,
)
from triplegain_core.portfolio.metrics import MINUTES_PER_YEAR
from triplegain_core.portfolio.positions import PositionStatus

# PBO's blocks: C(16, 8) = 12,870 splits.
PBO_BLOCKS = 16
MINUTES_PER_HOUR = 60
BLOCK_HOURS = 24


@dataclass(frozen=True, slots=True)
class AccountSharpe:
    """A trading account's annualized Sharpe ratio with its 95 % interval (None: too flat)."""

    account: str
    interval: SharpeInterval | None


@dataclass(frozen=True, slots=True)
class Robustness:
    """The statistics of a backtest's trading accounts and the Monte Carlo of the best one."""

    sharpes: tuple[AccountSharpe, ...]
    best: str | None
    trials: int
    deflated_sharpe: float | None
    overfitting: Overfitting | None
    reshuffled: MonteCarloResult | None
    bootstrapped: MonteCarloResult | None


def robustness(card: Scorecard, *, trials: int | None = None, runs: int = 1000, seed: int = 7) -> Robustness:
    """See the module's docstring; ``runs`` Monte Carlo runs of each kind, seeded by ``seed``."""
    trading = [a for a in card.accounts if a.kind is not AccountKind.BASELINE and len(a.trail.curve.equity) > 3]
    returns = {a.name: _minute_returns(np.frombuffer(a.trail.curve.equity, dtype=float)) for a in trading}
    sharpes = tuple(AccountSharpe(name, _interval(values)) for name, values in returns.items())
    # The best is one that traded: an idle account's Sharpe is only its holdings' drift.
    traded = {a.name for a in trading if any(p.status is PositionStatus.CLOSED for p in a.trail.positions.values())}
    ranked = [(s.interval.sharpe, s.account) for s in sharpes if s.interval is not None and s.account in traded]
    if not ranked:
        return Robustness(sharpes, None, len(trading), None, None, None, None)
    best = max(ranked)[1]
    count = max(trials or len(trading), len(trading))
    per_period = [moments(returns[s.account]).sharpe for s in sharpes if s.interval is not None]
    deflated = deflated_sharpe_ratio(moments(returns[best]), count,
                                     float(np.var(per_period, ddof=1)) if len(per_period) > 1 else 0.0)
    length = min(len(values) for values in returns.values())
    overfitting = None
    if len(returns) >= 2 and length >= PBO_BLOCKS:
        overfitting = probability_of_backtest_overfitting(
            np.column_stack([values[:length] for values in returns.values()]), PBO_BLOCKS)
    account = next(a for a in trading if a.name == best)
    equity = np.frombuffer(account.trail.curve.equity, dtype=float)
    trade_returns = [p.realized_pnl_usdt / p.equity_at_entry_usdt for p in account.trail.positions.values()
                     if p.status is PositionStatus.CLOSED and p.realized_pnl_usdt is not None
                     and p.equity_at_entry_usdt > 0]
    reshuffled = reshuffle_trades(trade_returns, float(equity[0]), runs, seed) if len(trade_returns) > 1 else None
    hourly = _minute_returns(equity[::MINUTES_PER_HOUR])
    bootstrapped = (block_bootstrap(hourly, min(BLOCK_HOURS, len(hourly)), float(equity[0]), runs, seed)
                    if len(hourly) > 1 else None)
    return Robustness(sharpes, best, count, deflated, overfitting, reshuffled, bootstrapped)


def _minute_returns(equity: np.ndarray) -> np.ndarray:
    return np.asarray(equity[1:] / equity[:-1] - 1.0, dtype=float)


def _interval(values: np.ndarray) -> SharpeInterval | None:
    try:
        return sharpe_interval(values, MINUTES_PER_YEAR)
    except ValueError:  # too few returns, or none varying
        return None


def summary(robust: Robustness) -> dict[str, object]:
    """The figures of ``robust`` as plain values (for storage and display): the best account, its
    Sharpe interval, the deflated Sharpe, the PBO, and the Monte Carlo percentiles."""
    figures: dict[str, object] = {"best": robust.best, "trials": robust.trials,
                                  "deflated_sharpe": robust.deflated_sharpe,
                                  "pbo": None if robust.overfitting is None else robust.overfitting.probability}
    best = next((s.interval for s in robust.sharpes if s.account == robust.best), None)
    if best is not None:
        figures["sharpe"], figures["sharpe_low"], figures["sharpe_high"] = best.sharpe, best.low, best.high
    for name, mc in (("reshuffled", robust.reshuffled), ("bootstrapped", robust.bootstrapped)):
        if mc is None:
            continue
        equity, drawdown = mc.equity_percentiles(), mc.drawdown_percentiles()
        figures[name] = {"runs": len(mc.final_equity), "seed": mc.seed,
                         "final_equity": [equity.p5, equity.p50, equity.p95],
                         "max_drawdown": [drawdown.p5, drawdown.p50, drawdown.p95],
                         "p_drawdown_10pct": mc.probability_of_drawdown(0.10)}
    return figures
