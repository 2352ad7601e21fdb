"""Portfolio reports: holdings tables in markdown and the equity curve as a PNG.

Pure functions over typed inputs (``PortfolioSnapshot``, ``Position``) or the snapshot frame
that ``TradingStore.snapshots`` returns: columns ``time`` (UTC), ``btc``, ``usdt``, ``xrp``,
``equity_usdt`` and ``prices`` (a dict of last prices keyed by symbol, e.g. ``"BTC/USDT"``).
No database, no Dagster: the caller reads the data and decides where the output goes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from triplegain_core.model.market import INSTRUMENTS, Asset
from triplegain_core.portfolio.balances import PortfolioSnapshot
from triplegain_core.portfolio.positions import Position, PositionStatus

SNAPSHOT_COLUMNS: tuple[str, ...] = ("time", "btc", "usdt", "xrp", "equity_usdt", "prices")
ASSET_ORDER: tuple[Asset, ...] = (Asset.BTC, Asset.USDT, Asset.XRP)


@dataclass(frozen=True, slots=True)
class AssetHolding:
    """One asset's balance at the start and end of the report window."""

    asset: Asset
    start_balance: float
    final_balance: float
    final_value_usdt: float | None  # None when the last snapshot has no price for the asset


@dataclass(frozen=True, slots=True)
class PerformanceSummary:
    """The figures of a report: holdings per asset, equity, PnL and trade statistics."""

    holdings: tuple[AssetHolding, ...]
    equity_start_usdt: float
    equity_end_usdt: float
    realized_pnl_usdt: float
    closed_trades: int
    open_positions: int
    winning_trades: int

    @property
    def pnl_usdt(self) -> float:
        return self.equity_end_usdt - self.equity_start_usdt

    @property
    def pnl_pct(self) -> float:
        """PnL relative to the starting equity, in percent (0 when the start equity is 0)."""
        return 100.0 * self.pnl_usdt / self.equity_start_usdt if self.equity_start_usdt else 0.0

    @property
    def win_rate(self) -> float | None:
        """Share of closed positions with a positive realized PnL; None before the first close."""
        return self.winning_trades / self.closed_trades if self.closed_trades else None


def usdt_price(asset: Asset, prices: Mapping[str, float]) -> float | None:
    """The USDT price of ``asset`` from last prices keyed by symbol, crossing XRP/BTC if needed."""
    if asset is Asset.USDT:
        return 1.0
    direct = prices.get(f"{asset.value}/USDT")
    if direct is not None:
        return float(direct)
    if asset is Asset.XRP and "XRP/BTC" in prices and "BTC/USDT" in prices:
        return float(prices["XRP/BTC"]) * float(prices["BTC/USDT"])
    return None


def snapshot_from_record(account: str, record: Mapping[str, Any]) -> PortfolioSnapshot:
    """A ``PortfolioSnapshot`` from one row of the snapshot frame (see the module docstring)."""
    return PortfolioSnapshot.from_stored(
        account=account,
        time=pd.Timestamp(record["time"]).to_pydatetime(),
        balances={asset: record[asset.value.lower()] for asset in ASSET_ORDER},
        prices=record["prices"],
        equity_usdt=record["equity_usdt"],
    )


def summarize(
    snapshot_first: PortfolioSnapshot,
    snapshot_last: PortfolioSnapshot,
    positions: Sequence[Position],
) -> PerformanceSummary:
    """Holdings, equity and trade statistics between two snapshots of one account.

    Realized PnL is booked in each symbol's quote asset; it is converted to USDT at the last
    snapshot's prices (a position whose quote has no price there counts as 0).
    """
    holdings = []
    for asset in ASSET_ORDER:
        final = snapshot_last.balances.get(asset, 0.0)
        price = usdt_price(asset, snapshot_last.prices)
        value = final * price if price is not None else (0.0 if final == 0 else None)
        holdings.append(AssetHolding(asset, snapshot_first.balances.get(asset, 0.0), final, value))
    closed = [p for p in positions if p.status is PositionStatus.CLOSED]
    realized = 0.0
    for position in closed:
        quote_price = usdt_price(INSTRUMENTS[position.symbol].quote, snapshot_last.prices)
        realized += position.realized_pnl * (quote_price or 0.0)
    return PerformanceSummary(
        holdings=tuple(holdings),
        equity_start_usdt=snapshot_first.equity_usdt,
        equity_end_usdt=snapshot_last.equity_usdt,
        realized_pnl_usdt=realized,
        closed_trades=len(closed),
        open_positions=len(positions) - len(closed),
        winning_trades=sum(1 for p in closed if p.realized_pnl > 0),
    )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (pipes in cells are escaped)."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _amount(value: float | None, digits: int = 8) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def holdings_markdown(
    snapshot_first: PortfolioSnapshot,
    snapshot_last: PortfolioSnapshot,
    positions: Sequence[Position],
) -> str:
    """The holdings report: one row per asset (BTC, USDT, XRP), then equity, PnL and trades."""
    summary = summarize(snapshot_first, snapshot_last, positions)
    assets = markdown_table(
        ["asset", "start balance", "final balance", "value (USDT)"],
        [
            [h.asset.value, _amount(h.start_balance), _amount(h.final_balance),
             _amount(h.final_value_usdt, 2)]
            for h in summary.holdings
        ],
    )
    win_rate = "n/a" if summary.win_rate is None else f"{100 * summary.win_rate:.1f}%"
    totals = markdown_table(
        ["figure", "value"],
        [
            ["equity start (USDT)", _amount(summary.equity_start_usdt, 2)],
            ["equity end (USDT)", _amount(summary.equity_end_usdt, 2)],
            ["PnL (USDT)", f"{summary.pnl_usdt:+,.2f}"],
            ["PnL (%)", f"{summary.pnl_pct:+.2f}%"],
            ["realized PnL of closed positions (USDT)", f"{summary.realized_pnl_usdt:+,.2f}"],
            ["closed trades", summary.closed_trades],
            ["open positions", summary.open_positions],
            ["win rate", win_rate],
        ],
    )
    return (
        f"### Account `{snapshot_last.account}`: {snapshot_first.time:%Y-%m-%d %H:%M} to "
        f"{snapshot_last.time:%Y-%m-%d %H:%M} UTC\n\n{assets}\n\n{totals}\n"
    )


def asset_values_usdt(snapshots: pd.DataFrame) -> pd.DataFrame:
    """Each asset's balance valued in USDT at each snapshot's own prices (NaN without a price)."""
    values = {}
    for asset in ASSET_ORDER:
        prices = snapshots["prices"].map(lambda p, a=asset: usdt_price(a, p or {}))
        values[asset.value] = snapshots[asset.value.lower()] * prices.astype(float)
    return pd.DataFrame(values, index=snapshots.index)


def plot_equity_curve(snapshots: pd.DataFrame, path: Path, title: str | None = None) -> Path:
    """Draw equity over time (top) and each asset's balance valued in USDT, stacked (bottom).

    ``snapshots`` has the columns of the module docstring and at least one row; the PNG is
    written at ``path`` (folders created) and ``path`` returned.
    """
    if snapshots.empty:
        raise ValueError("no snapshots to plot")
    times = pd.to_datetime(snapshots["time"], utc=True)
    values = asset_values_usdt(snapshots).fillna(0.0)
    equity = snapshots["equity_usdt"].astype(float)
    # The Figure API (not pyplot) keeps no global state, so concurrent runs cannot collide.
    figure = Figure(figsize=(10, 6.5), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    # Equity gets its own axis: stacked under the holdings, a 1% move would be invisible.
    top.plot(times, equity, color="black", linewidth=1.6, marker="." if len(equity) < 200 else None,
             label="equity")
    top.axhline(equity.iloc[0], color="grey", linestyle="--", linewidth=0.8, label="start equity")
    top.set_ylabel("equity (USDT)")
    top.set_title(title or "Equity in USDT")
    top.legend(loc="best")
    bottom.stackplot(times, *(values[a.value] for a in ASSET_ORDER),
                     labels=[a.value for a in ASSET_ORDER], alpha=0.6)
    bottom.set_ylabel("holdings (USDT)")
    bottom.set_xlabel("time (UTC)")
    bottom.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
