"""Account metrics against values computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triplegain_core.model.signals import Direction
from triplegain_core.portfolio.metrics import account_metrics, max_drawdown, sharpe_ratio, sortino_ratio
from triplegain_core.portfolio.positions import Position, PositionStatus

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _closed(pid: str, symbol: str, pnl: float, pnl_usdt: float | None = None, account: str = "a") -> Position:
    return Position(
        position_id=pid, account=account, symbol=symbol, direction=Direction.LONG, quantity=1.0, entry_price=1.0,
        stop_loss=0.99, take_profit=1.02, opened_at=T0, entry_notional_usdt=1.0, equity_at_entry_usdt=100.0,
        status=PositionStatus.CLOSED, closed_at=T0, exit_price=1.0, realized_pnl=pnl, realized_pnl_usdt=pnl_usdt,
    )


def test_drawdown_sharpe_sortino_by_hand() -> None:
    # Equity 100 -> 110 -> 99 -> 105: returns +10%, -10%, +6.0606%.
    equity = [100.0, 110.0, 99.0, 105.0]
    returns = [0.1, -0.1, 105.0 / 99.0 - 1.0]
    assert max_drawdown(equity) == pytest.approx(0.1)  # 110 -> 99
    # mean 0.020202, sample std 0.105945 -> 0.190684; downside sqrt(0.01 / 3) = 0.057735 -> 0.349909.
    assert sharpe_ratio(returns, 1) == pytest.approx(0.190684, rel=1e-5)
    assert sharpe_ratio(returns, 4) == pytest.approx(2 * 0.190684, rel=1e-5)
    assert sortino_ratio(returns, 1) == pytest.approx(0.349909, rel=1e-5)


def test_returns_that_never_vary_have_no_sharpe_ratio() -> None:
    # Three equal returns leave a rounding variance of ~1e-34, which once gave a ratio of 6e15.
    assert sharpe_ratio([0.1, 0.1, 0.1], 1) is None
    assert sharpe_ratio([0.0, 0.0], 1) is None
    assert sharpe_ratio([0.01], 1) is None and sharpe_ratio([0.01, 0.01], 1) is None
    assert sortino_ratio([0.01, 0.02], 1) is None  # no losing period
    assert max_drawdown([1.0, 2.0, 3.0]) == 0.0


def test_account_metrics_of_one_account() -> None:
    positions = [
        _closed("1", "XRP/USDT", 5.0),
        _closed("2", "XRP/USDT", -2.0),
        _closed("3", "XRP/BTC", 1e-5, pnl_usdt=0.4),
        _closed("4", "XRP/BTC", -1e-5),  # no USDT value recorded
        _closed("5", "BTC/USDT", -1.0),
        _closed("6", "BTC/USDT", 9.0, account="other"),
    ]
    curve = [(T0 + timedelta(minutes=m), e) for m, e in enumerate([100.0, 110.0, 99.0, 105.0])]
    metrics = account_metrics("a", positions, list(reversed(curve)), periods_per_year=1)
    assert (metrics.trades, metrics.wins, metrics.losses) == (5, 2, 3)
    assert metrics.win_rate == pytest.approx(0.4)
    assert metrics.pnl_by_symbol == {"XRP/USDT": 3.0, "XRP/BTC": 0.4, "BTC/USDT": -1.0}
    assert metrics.realized_pnl_usdt == pytest.approx(2.4)
    assert metrics.unvalued_trades == 1
    assert metrics.max_drawdown == pytest.approx(0.1)
    assert metrics.sharpe == pytest.approx(0.190684, rel=1e-5)
    assert metrics.sortino == pytest.approx(0.349909, rel=1e-5)
    assert (metrics.start_equity_usdt, metrics.end_equity_usdt) == (100.0, 105.0)


def test_empty_account() -> None:
    metrics = account_metrics("a", [], [])
    assert metrics.trades == 0 and metrics.win_rate is None and metrics.sharpe is None
    assert metrics.max_drawdown == 0.0 and metrics.end_equity_usdt is None
