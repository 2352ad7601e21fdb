"""Holdings per asset of each account's latest snapshot, their markdown tables and PNG.

Pure functions over typed inputs (``PortfolioSnapshot``, ``AccountMetrics``); the caller
reads them from the store and decides where the picture goes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict

from triplegain_core.model.market import Asset
from triplegain_core.portfolio.balances import PortfolioSnapshot
from triplegain_core.portfolio.metrics import AccountMetrics
from triplegain_core.reporting.reports import ASSET_ORDER, markdown_table, usdt_price

# One colour per asset, the same in every picture.
ASSET_COLOURS: dict[Asset, str] = {Asset.BTC: "#f7931a", Asset.USDT: "#26a17b", Asset.XRP: "#23292f"}


class AssetAllocation(BaseModel):
    """One asset of one account: balance, USDT price and value, share of the equity."""

    model_config = ConfigDict(frozen=True)

    asset: Asset
    balance: float
    price_usdt: float | None  # None when the snapshot has no price for the asset
    value_usdt: float | None
    share: float | None  # of the gross value of the holdings; None without a value


class AccountAllocation(BaseModel):
    """The holdings of one account at its latest snapshot."""

    model_config = ConfigDict(frozen=True)

    account: str
    time: datetime
    equity_usdt: float
    assets: tuple[AssetAllocation, ...]

    def share(self, asset: Asset) -> float | None:
        """The asset's share of the holdings' value."""
        return next(a.share for a in self.assets if a.asset is asset)


def allocation_of(snapshot: PortfolioSnapshot) -> AccountAllocation:
    """Value each asset of the snapshot at its own prices and take its share of the total.

    Shares are of the gross holdings (balances, not net of loans), as the rebalancing
    triggers measure them; ``equity_usdt`` is the snapshot's own (net) equity.
    """
    values: dict[Asset, tuple[float, float | None, float | None]] = {}
    for asset in ASSET_ORDER:
        balance = snapshot.balances.get(asset, 0.0)
        price = usdt_price(asset, snapshot.prices)
        value = balance * price if price is not None else (0.0 if balance == 0.0 else None)
        values[asset] = (balance, price, value)
    priced = [v for _, _, v in values.values() if v is not None]
    total = sum(priced)
    complete = len(priced) == len(values)
    return AccountAllocation(
        account=snapshot.account, time=snapshot.time, equity_usdt=snapshot.equity_usdt,
        assets=tuple(
            AssetAllocation(asset=asset, balance=balance, price_usdt=price, value_usdt=value,
                            share=value / total if value is not None and complete and total > 0.0 else None)
            for asset, (balance, price, value) in values.items()
        ),
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _usdt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def allocation_markdown(allocations: Sequence[AccountAllocation]) -> str:
    """One row per account and asset: balance, price, value and share, then the equity."""
    rows: list[list[object]] = []
    for item in allocations:
        for asset in item.assets:
            rows.append([item.account, f"{item.time:%Y-%m-%d %H:%M}", asset.asset.value,
                         f"{asset.balance:,.8f}", _usdt(asset.price_usdt), _usdt(asset.value_usdt),
                         _pct(asset.share)])
        rows.append([item.account, f"{item.time:%Y-%m-%d %H:%M}", "**equity**", "", "",
                     f"**{_usdt(item.equity_usdt)}**", ""])
    return markdown_table(
        ["account", "snapshot (UTC)", "asset", "balance", "price (USDT)", "value (USDT)", "share"],
        rows,
    )


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def metrics_markdown(metrics: Sequence[AccountMetrics]) -> str:
    """One row per account: trades, win rate, PnL, max drawdown, Sharpe and Sortino."""
    rows = []
    for m in metrics:
        equity_pnl = (None if m.start_equity_usdt is None or m.end_equity_usdt is None
                      else m.end_equity_usdt - m.start_equity_usdt)
        rows.append([m.account, m.trades, _pct(m.win_rate), f"{m.realized_pnl_usdt:+,.2f}",
                     "n/a" if equity_pnl is None else f"{equity_pnl:+,.2f}",
                     f"{100 * m.max_drawdown:.2f}%", _ratio(m.sharpe), _ratio(m.sortino)])
    return markdown_table(
        ["account", "trades", "win rate", "realized PnL (USDT)", "equity PnL (USDT)",
         "max drawdown", "Sharpe (ann.)", "Sortino (ann.)"],
        rows,
    )


def plot_allocations(
    allocations: Sequence[AccountAllocation], path: Path, target: Mapping[Asset, float] | None = None
) -> Path:
    """One horizontal bar per account, split by each asset's share; the target as a last bar.

    The PNG is written at ``path`` (folders created) and ``path`` returned.
    """
    if not allocations:
        raise ValueError("no allocations to plot")
    bars = [(item.account, {a.asset: a.share or 0.0 for a in item.assets}) for item in allocations]
    if target is not None:
        bars.append(("target", dict(target)))
    # The Figure API (not pyplot) keeps no global state, so concurrent runs cannot collide.
    figure = Figure(figsize=(9, 1.2 + 0.6 * len(bars)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    labels = [name for name, _ in bars]
    left = [0.0] * len(bars)
    for asset in ASSET_ORDER:
        widths = [shares.get(asset, 0.0) for _, shares in bars]
        axes.barh(labels, widths, left=left, color=ASSET_COLOURS[asset], label=asset.value)
        for row, (start, width) in enumerate(zip(left, widths, strict=True)):
            if width >= 0.06:  # narrower segments have no room for their label
                axes.text(start + width / 2, row, f"{100 * width:.0f}%", ha="center",
                          va="center", color="white", fontsize=9)
        left = [start + width for start, width in zip(left, widths, strict=True)]
    axes.invert_yaxis()
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("share of the holdings' value (USDT)")
    axes.set_title("Allocation per account at its latest snapshot")
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
