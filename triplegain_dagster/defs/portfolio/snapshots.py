"""The latest portfolio snapshot of every paper account: holdings, allocation and metrics."""

import base64

import dagster as dg

from triplegain_core.reporting.allocation import (
    allocation_markdown,
    allocation_of,
    metrics_markdown,
    plot_allocations,
)
from triplegain_core.storage.portfolio_store import PortfolioStore
from triplegain_core.storage.trading_store import TradingStore
from triplegain_dagster import groups
from triplegain_dagster.defs.analytics import ANALYTICS_FRESHNESS
from triplegain_dagster.defs.market_data.candles import candles_1m
from triplegain_dagster.resources import PostgresResource, RebalancingResource

ALLOCATION_FILE = "allocation.png"


@dg.asset(
    group_name=groups.PORTFOLIO,
    freshness_policy=ANALYTICS_FRESHNESS,
    # After the candles and their blocking check, like the report: the snapshots were valued
    # at those market prices.
    deps=[candles_1m],
    kinds={"python"},
    description="Holdings, value and allocation per asset (BTC / USDT / XRP) at each paper"
                " account's latest snapshot (written by the executor), with the account's"
                " trades, win rate, PnL, max drawdown, Sharpe and Sortino.",
)
def portfolio_snapshots(
    context: dg.AssetExecutionContext, postgres: PostgresResource, rebalancing: RebalancingResource
) -> dg.MaterializeResult:
    """Tabulate every account's latest holdings and metrics; draw the allocation PNG
    (under ``<data_dir>/reports``)."""
    with postgres.connect() as conn:
        store, trading = PortfolioStore(conn), TradingStore(conn)
        latest = store.latest_snapshots()
        metrics = [trading.account_metrics(s.account) for s in latest]
    if not latest:
        message = "No portfolio snapshots stored yet: the executor writes them as it trades."
        context.log.info(message)
        return dg.MaterializeResult(metadata={"accounts": 0,
                                              "holdings": dg.MetadataValue.md(message)})

    allocations = [allocation_of(snapshot) for snapshot in latest]
    path = plot_allocations(
        allocations, (postgres.settings().data_dir / "reports" / ALLOCATION_FILE).resolve(),
        target=rebalancing.agent().config.target,
    )
    # Inlined as a data URI so the UI shows the picture itself, wherever the file system is.
    image = base64.b64encode(path.read_bytes()).decode("ascii")
    return dg.MaterializeResult(metadata={
        "accounts": len(latest),
        "latest_snapshot": dg.MetadataValue.text(
            f"{max(s.time for s in latest):%Y-%m-%d %H:%M:%S} UTC"),
        "total_equity_usdt": sum(s.equity_usdt for s in latest),
        "holdings": dg.MetadataValue.md(allocation_markdown(allocations)),
        "metrics": dg.MetadataValue.md(metrics_markdown(metrics)),
        "allocation": dg.MetadataValue.md(f"![allocation](data:image/png;base64,{image})"),
        "allocation_path": dg.MetadataValue.path(str(path)),
    })
