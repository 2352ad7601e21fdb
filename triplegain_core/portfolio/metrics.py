"""Performance of one paper account: trades, win rate, PnL by symbol, drawdown, Sharpe, Sortino.

Each strategy (and each LLM) trades its own isolated account over the same market; these
metrics put them side by side. Inputs are the account's positions and its equity curve
(time, equity in USDT), sampled at a regular period (the executor snapshots every minute).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from triplegain_core.model.market import INSTRUMENTS, Asset
from triplegain_core.portfolio.positions import Position, PositionStatus

MINUTES_PER_YEAR = 365 * 24 * 60


class AccountMetrics(BaseModel):
    """The scorecard of one account. Ratios are None where they are undefined (too few data)."""

    model_config = ConfigDict(frozen=True)

    account: str
    trades: int
    wins: int
    losses: int
    win_rate: float | None
    realized_pnl_usdt: float
    pnl_by_symbol: dict[str, float]
    unvalued_trades: int
    max_drawdown: float
    sharpe: float | None
    sortino: float | None
    start_equity_usdt: float | None
    end_equity_usdt: float | None


def max_drawdown(equity: Sequence[float]) -> float:
    """Largest fall from a running peak, as a fraction of that peak (0 for a rising curve)."""
    peak, worst = -math.inf, 0.0
    for value in equity:
        peak = max(peak, value)
        if peak > 0:
            worst = max(worst, (peak - value) / peak)
    return worst


def period_returns(equity: Sequence[float]) -> list[float]:
    """Simple returns between consecutive equity values."""
    return [b / a - 1.0 for a, b in itertools.pairwise(equity) if a > 0]


def sharpe_ratio(returns: Sequence[float], periods_per_year: float) -> float | None:
    """Mean over sample standard deviation of the returns, annualized (risk-free rate 0)."""
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    variance = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    # Rounding leaves a constant series a variance of ~1e-34, not 0: that is no ratio either.
    if not math.sqrt(variance) > 1e-12 * max(abs(r) for r in returns):
        return None
    return mean / math.sqrt(variance) * math.sqrt(periods_per_year)


def sortino_ratio(returns: Sequence[float], periods_per_year: float) -> float | None:
    """Mean over downside deviation (root mean square of the negative returns, over all
    periods, target 0), annualized; None without any losing period."""
    if len(returns) < 2:
        return None
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    if downside <= 0:
        return None
    mean = sum(returns) / len(returns)
    return mean / downside * math.sqrt(periods_per_year)


def account_metrics(
    account: str,
    positions: Sequence[Position],
    equity_curve: Sequence[tuple[datetime, float]],
    periods_per_year: float = MINUTES_PER_YEAR,
) -> AccountMetrics:
    """The metrics of ``account`` from its positions and its equity curve (oldest first).

    Trades are the closed positions; a win has realized PnL > 0. PnL by symbol is in USDT:
    ``realized_pnl_usdt`` when recorded, else ``realized_pnl`` for USDT-quoted symbols;
    other trades without a USDT value are counted in ``unvalued_trades``.
    """
    closed = [p for p in positions if p.status is PositionStatus.CLOSED and p.account == account]
    wins = sum(p.realized_pnl > 0 for p in closed)
    pnl_by_symbol: dict[str, float] = {}
    unvalued = 0
    for position in closed:
        value = position.realized_pnl_usdt
        if value is None and INSTRUMENTS[position.symbol].quote is Asset.USDT:
            value = position.realized_pnl
        if value is None:
            unvalued += 1
            continue
        pnl_by_symbol[position.symbol] = pnl_by_symbol.get(position.symbol, 0.0) + value
    ordered = [equity for _, equity in sorted(equity_curve, key=lambda point: point[0])]
    returns = period_returns(ordered)
    return AccountMetrics(
        account=account,
        trades=len(closed),
        wins=wins,
        losses=sum(p.realized_pnl < 0 for p in closed),
        win_rate=wins / len(closed) if closed else None,
        realized_pnl_usdt=sum(pnl_by_symbol.values()),
        pnl_by_symbol=pnl_by_symbol,
        unvalued_trades=unvalued,
        max_drawdown=max_drawdown(ordered),
        sharpe=sharpe_ratio(returns, periods_per_year),
        sortino=sortino_ratio(returns, periods_per_year),
        start_equity_usdt=ordered[0] if ordered else None,
        end_equity_usdt=ordered[-1] if ordered else None,
    )
