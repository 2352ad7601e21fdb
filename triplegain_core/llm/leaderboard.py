"""The leaderboard: every model (and the consensus) from its own isolated paper account.

A pure function of typed inputs: each account's positions and equity curve (scored by
:func:`~triplegain_core.portfolio.metrics.account_metrics`), its scored decisions (confidence
against whether the decision won, for the Brier score), and what its calls cost and how long
they took. Rows rank by return, best first; :func:`render_markdown` prints the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.decisions.published import model_account
from triplegain_core.portfolio.metrics import MINUTES_PER_YEAR, account_metrics
from triplegain_core.portfolio.positions import Position


class ScoredDecision(BaseModel):
    """One decision's stated confidence and whether it won (a closed trade with PnL > 0)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    confidence: float = Field(ge=0.0, le=1.0)
    won: bool


class ModelAccount(BaseModel):
    """One model's (or the consensus's) paper account over the compared period."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    positions: tuple[Position, ...] = ()
    equity_curve: tuple[tuple[datetime, float], ...] = ()
    scored_decisions: tuple[ScoredDecision, ...] = ()
    cost_usd: float = Field(default=0.0, ge=0.0)
    latencies_ms: tuple[float, ...] = ()
    is_consensus: bool = False


class LeaderboardRow(BaseModel):
    """One account's line. Undefined figures (no data) are None."""

    model_config = ConfigDict(frozen=True)

    rank: int = Field(ge=0)
    name: str
    is_consensus: bool
    return_pct: float | None
    max_drawdown_pct: float
    sharpe: float | None
    trades: int
    win_rate: float | None
    brier: float | None
    cost_usd: float
    mean_latency_ms: float | None
    max_latency_ms: float | None


class Leaderboard(BaseModel):
    """The rows, best return first (accounts without a return last, by name)."""

    model_config = ConfigDict(frozen=True)

    rows: tuple[LeaderboardRow, ...]


def brier_score(decisions: Sequence[ScoredDecision]) -> float | None:
    """Mean of (confidence - outcome)^2 with outcome 1 for a win, 0 otherwise; None without data."""
    if not decisions:
        return None
    return sum((d.confidence - (1.0 if d.won else 0.0)) ** 2 for d in decisions) / len(decisions)


def leaderboard(accounts: Sequence[ModelAccount], periods_per_year: float = MINUTES_PER_YEAR) -> Leaderboard:
    """Score and rank ``accounts`` (equity curves sampled every period, one per minute by default)."""
    names = [a.name for a in accounts]
    if len(names) != len(set(names)):
        raise ValueError(f"account names must be unique, got {names}")
    unranked = []
    for account in accounts:
        # The positions are the paper account's (``llm:<name>``), not the model's bare name.
        metrics = account_metrics(model_account(account.name), account.positions, account.equity_curve,
                                  periods_per_year)
        start, end = metrics.start_equity_usdt, metrics.end_equity_usdt
        unranked.append(LeaderboardRow(
            rank=0, name=account.name, is_consensus=account.is_consensus,
            return_pct=(end / start - 1.0) * 100 if start and end is not None else None,
            max_drawdown_pct=metrics.max_drawdown * 100, sharpe=metrics.sharpe,
            trades=metrics.trades, win_rate=metrics.win_rate,
            brier=brier_score(account.scored_decisions), cost_usd=account.cost_usd,
            mean_latency_ms=sum(account.latencies_ms) / len(account.latencies_ms) if account.latencies_ms else None,
            max_latency_ms=max(account.latencies_ms) if account.latencies_ms else None,
        ))
    unranked.sort(key=lambda row: (row.return_pct is None, -(row.return_pct or 0.0), row.name))
    return Leaderboard(rows=tuple(row.model_copy(update={"rank": i + 1}) for i, row in enumerate(unranked)))


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def render_markdown(board: Leaderboard) -> str:
    """The leaderboard as a markdown table (the consensus account in bold)."""
    lines = [
        "| # | Model | Return % | Max DD % | Sharpe | Trades | Win rate | Brier | Cost $ "
        "| Mean latency ms | Max latency ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in board.rows:
        name = f"**{row.name}**" if row.is_consensus else row.name
        lines.append(
            f"| {row.rank} | {name} | {_fmt(row.return_pct, '+.2f')} | {row.max_drawdown_pct:.2f} |"
            f" {_fmt(row.sharpe, '.2f')} | {row.trades} | {_fmt(row.win_rate, '.0%')} | {_fmt(row.brier, '.3f')} |"
            f" {row.cost_usd:.4f} | {_fmt(row.mean_latency_ms, '.0f')} | {_fmt(row.max_latency_ms, '.0f')} |"
        )
    return "\n".join(lines)
