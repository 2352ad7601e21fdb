"""The leaderboard over per-model paper accounts, its numbers computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triplegain_core.llm.leaderboard import (
    Leaderboard,
    ModelAccount,
    ScoredDecision,
    brier_score,
    leaderboard,
    render_markdown,
)
from triplegain_core.model.signals import Direction
from triplegain_core.portfolio.positions import Position, PositionStatus

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def closed(account: str, pnl: float, n: int) -> Position:
    return Position(position_id=f"{account}-{n}", account=account, symbol="BTC/USDT", direction=Direction.LONG,
                    quantity=0.01, entry_price=100.0, stop_loss=98.0, take_profit=104.0, opened_at=T0,
                    entry_notional_usdt=1.0, equity_at_entry_usdt=1000.0, status=PositionStatus.CLOSED,
                    closed_at=T0 + timedelta(minutes=5), exit_price=101.0, realized_pnl=pnl)


def curve(*values: float) -> tuple[tuple[datetime, float], ...]:
    return tuple((T0 + timedelta(minutes=i), v) for i, v in enumerate(values))


def test_every_column_by_hand() -> None:
    claude = ModelAccount(
        # Stored positions belong to the model's paper account, llm:claude (the demo's leaderboard
        # once counted no trade at all, looking for positions of an account named "claude").
        name="claude", positions=(closed("llm:claude", 60.0, 1), closed("llm:claude", -30.0, 2),
                                  closed("llm:claude", 15.0, 3)),
        equity_curve=curve(1000, 1100, 990, 1045),
        scored_decisions=(ScoredDecision(confidence=0.8, won=True), ScoredDecision(confidence=0.6, won=False),
                          ScoredDecision(confidence=0.9, won=True)),
        cost_usd=0.125, latencies_ms=(100.0, 300.0),
    )
    consensus = ModelAccount(name="consensus", equity_curve=curve(1000, 1010), is_consensus=True)
    idle = ModelAccount(name="qwen")
    board = leaderboard([consensus, idle, claude], periods_per_year=1)

    assert [r.name for r in board.rows] == ["claude", "consensus", "qwen"]
    assert [r.rank for r in board.rows] == [1, 2, 3]
    row = board.rows[0]
    assert row.return_pct == pytest.approx(4.5)               # 1045 / 1000 - 1
    assert row.max_drawdown_pct == pytest.approx(10.0)        # 1100 -> 990
    # returns 0.1, -0.1, 55/990: mean / sample sd, annualised with 1 period a year
    assert row.sharpe == pytest.approx(0.17633640, rel=1e-6)
    assert row.trades == 3 and row.win_rate == pytest.approx(2 / 3)
    assert row.brier == pytest.approx((0.2 ** 2 + 0.6 ** 2 + 0.1 ** 2) / 3)
    assert (row.cost_usd, row.mean_latency_ms, row.max_latency_ms) == (0.125, 200.0, 300.0)

    assert board.rows[1].return_pct == pytest.approx(1.0) and board.rows[1].sharpe is None
    empty = board.rows[2]
    assert (empty.return_pct, empty.sharpe, empty.win_rate, empty.brier, empty.mean_latency_ms) == (None,) * 5


def test_brier_extremes_and_unique_names() -> None:
    assert brier_score([]) is None
    assert brier_score([ScoredDecision(confidence=1.0, won=True)]) == 0.0
    assert brier_score([ScoredDecision(confidence=1.0, won=False)]) == 1.0
    with pytest.raises(ValueError, match="unique"):
        leaderboard([ModelAccount(name="a"), ModelAccount(name="a")])


def test_markdown_table() -> None:
    board = leaderboard([
        ModelAccount(name="gpt", equity_curve=curve(1000, 980), cost_usd=0.5, latencies_ms=(250.0,),
                     scored_decisions=(ScoredDecision(confidence=0.7, won=False),)),
        ModelAccount(name="consensus", equity_curve=curve(1000, 1020), is_consensus=True),
    ], periods_per_year=1)
    lines = render_markdown(board).splitlines()
    assert lines[0].startswith("| # | Model | Return %")
    assert len(lines) == 4
    assert lines[2] == "| 1 | **consensus** | +2.00 | 0.00 | - | 0 | - | - | 0.0000 | - | - |"
    assert lines[3] == "| 2 | gpt | -2.00 | 2.00 | - | 0 | - | 0.490 | 0.5000 | 250 | 250 |"
    assert render_markdown(Leaderboard(rows=())).count("\n") == 1
