"""One leaderboard for a backtest: every account and baseline ranked on the same measures.

Return and drawdown come from the equity curve (USDT, one point a minute); Sharpe and Sortino
from its minute returns, annualized; win rate and expectancy (mean realized PnL per closed trade,
USDT) from the closed positions; exposure is the share of the history's span during which the
account held at least one position; fees are in USDT.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from triplegain_core.backtest.baselines import baseline_accounts
from triplegain_core.backtest.engine import AccountKind, AccountResult, BacktestResult
from triplegain_core.backtest.regimes import RegimeRow, RegimeTimeline, metrics_by_regime
from triplegain_core.config import Settings
from triplegain_core.model.market import datetime_to_us
from triplegain_core.portfolio.metrics import (
    MINUTES_PER_YEAR,
    max_drawdown,
    period_returns,
    sharpe_ratio,
    sortino_ratio,
)
from triplegain_core.portfolio.positions import PositionStatus


@dataclass(frozen=True, slots=True)
class RankedAccount:
    """One account's measures; a ratio is None where it is undefined (too few data, no trade)."""

    rank: int
    account: str
    kind: AccountKind
    return_pct: float | None
    max_drawdown_pct: float
    sharpe: float | None
    sortino: float | None
    trades: int
    win_rate: float | None
    expectancy_usdt: float | None
    exposure: float
    fees_usdt: float
    end_equity_usdt: float | None


def leaderboard(accounts: Iterable[AccountResult], start_us: int, end_us: int) -> list[RankedAccount]:
    """Every account's row, best return first (ties by name; an account never valued last)."""
    rows = [_row(account, start_us, end_us) for account in accounts]
    rows.sort(key=lambda r: (r.return_pct is None, -(r.return_pct or 0.0), r.account))
    return [dataclasses.replace(row, rank=rank) for rank, row in enumerate(rows, start=1)]


def _row(account: AccountResult, start_us: int, end_us: int) -> RankedAccount:
    trail = account.trail
    equity = list(trail.curve.equity)
    returns = period_returns(equity)
    closed = [p for p in trail.positions.values() if p.status is PositionStatus.CLOSED]
    pnl = [p.realized_pnl_usdt for p in closed if p.realized_pnl_usdt is not None]
    return RankedAccount(
        rank=0,
        account=account.name,
        kind=account.kind,
        return_pct=(equity[-1] / equity[0] - 1) * 100 if equity and equity[0] > 0 else None,
        max_drawdown_pct=max_drawdown(equity) * 100,
        sharpe=sharpe_ratio(returns, MINUTES_PER_YEAR),
        sortino=sortino_ratio(returns, MINUTES_PER_YEAR),
        trades=len(closed),
        win_rate=sum(p.realized_pnl > 0 for p in closed) / len(closed) if closed else None,
        expectancy_usdt=sum(pnl) / len(pnl) if pnl else None,
        exposure=_exposure(account, start_us, end_us),
        fees_usdt=trail.fees_usdt,
        end_equity_usdt=equity[-1] if equity else None,
    )


def _exposure(account: AccountResult, start_us: int, end_us: int) -> float:
    """The share of [start, end] covered by the union of the account's positions' lifetimes."""
    spans = sorted((datetime_to_us(p.opened_at), end_us if p.closed_at is None else datetime_to_us(p.closed_at))
                   for p in account.trail.positions.values())
    covered, reach = 0, start_us
    for opened, closed in spans:
        opened = max(opened, reach)
        if closed > opened:
            covered += closed - opened
            reach = closed
    return covered / (end_us - start_us) if end_us > start_us else 0.0


@dataclass(frozen=True, slots=True)
class Scorecard:
    """A backtest's accounts beside its baselines, and the leaderboard of them all."""

    accounts: tuple[AccountResult, ...]
    rows: tuple[RankedAccount, ...]
    by_regime: tuple[RegimeRow, ...]

    def best_trading_account(self) -> AccountResult | None:
        """The best-ranked account that traded (not a baseline), if any."""
        name = next((r.account for r in self.rows if r.kind is not AccountKind.BASELINE and r.trades), None)
        return next((a for a in self.accounts if a.name == name), None)


def scorecard(settings: Settings, result: BacktestResult) -> Scorecard:
    """``result``'s accounts and the baselines of its history, ranked on one leaderboard, and
    their trades split by the regime at entry."""
    history = result.history
    accounts = (*result.accounts, *baseline_accounts(settings, history))
    return Scorecard(accounts, tuple(leaderboard(accounts, history.start_us, history.end_us)),
                     tuple(metrics_by_regime(result.accounts, RegimeTimeline(history))))
