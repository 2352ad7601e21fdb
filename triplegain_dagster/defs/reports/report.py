"""The portfolio report of one account: holdings, PnL and the equity curve."""

import base64
from typing import Any

import dagster as dg
from pydantic import Field

from triplegain_core.llm.leaderboard import leaderboard, render_markdown
from triplegain_core.reporting.reports import (
    holdings_markdown,
    plot_equity_curve,
    snapshot_from_record,
    summarize,
)
from triplegain_core.storage.model_accounts import model_accounts
from triplegain_core.storage.trading_store import TradingStore
from triplegain_dagster import groups
from triplegain_dagster.defs.analytics import ANALYTICS_FRESHNESS
from triplegain_dagster.defs.market_data.candles import candles_1m
from triplegain_dagster.resources import PostgresResource

EQUITY_CURVE_FILE = "equity_curve.png"


class PortfolioReportConfig(dg.Config):
    """Run configuration of ``portfolio_report``."""

    account: str | None = Field(
        default=None,
        description="Account to report; unset: TRIPLEGAIN_ACCOUNT, config file, else 'paper'.",
    )


@dg.asset(
    group_name=groups.REPORTS,
    freshness_policy=ANALYTICS_FRESHNESS,
    # After the candles and their blocking check: the executor valued these snapshots at the
    # same market prices, so a report is not published over market data known to be broken.
    deps=[candles_1m],
    kinds={"python"},
    description="Holdings per asset, equity, PnL and the equity curve of one trading account, beside"
                " the leaderboard of the models' own paper accounts when models trade.",
)
def portfolio_report(
    context: dg.AssetExecutionContext, config: PortfolioReportConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Build the holdings table and the equity-curve PNG (under ``<data_dir>/reports``)."""
    settings = postgres.settings()
    account = config.account or settings.account
    with postgres.connect() as conn:
        store = TradingStore(conn)
        snapshots = store.snapshots(account)
        positions = store.positions(account)
        models = model_accounts(conn)
    if snapshots.empty:
        message = f"No portfolio snapshots for account `{account}` yet: nothing to report."
        context.log.info(message)
        return dg.MaterializeResult(metadata={
            "account": account, "snapshots": 0, "holdings": dg.MetadataValue.md(message),
        })

    first = snapshot_from_record(account, snapshots.iloc[0])
    last = snapshot_from_record(account, snapshots.iloc[-1])
    summary = summarize(first, last, positions)
    path = plot_equity_curve(
        snapshots,
        (settings.data_dir / "reports" / EQUITY_CURVE_FILE).resolve(),
        title=f"Account {account}: equity in USDT",
    )
    # Inlined as a data URI so the UI shows the picture itself, wherever the file system is.
    image = base64.b64encode(path.read_bytes()).decode("ascii")
    # Raw values of several kinds: Dagster checks them (its union of them is private).
    metadata: dict[str, Any] = {
        "account": account,
        "snapshots": len(snapshots),
        "holdings": dg.MetadataValue.md(holdings_markdown(first, last, positions)),
        "equity_curve": dg.MetadataValue.md(f"![equity curve](data:image/png;base64,{image})"),
        "equity_curve_path": dg.MetadataValue.path(str(path)),
        "equity_start_usdt": summary.equity_start_usdt,
        "equity_end_usdt": summary.equity_end_usdt,
        "pnl_usdt": summary.pnl_usdt,
        "pnl_pct": summary.pnl_pct,
        "realized_pnl_usdt": summary.realized_pnl_usdt,
        "closed_trades": summary.closed_trades,
    }
    if summary.win_rate is not None:  # undefined before the first closed trade
        metadata["win_rate"] = summary.win_rate
    if models:  # the models' own paper accounts, side by side with this one
        metadata["llm_leaderboard"] = dg.MetadataValue.md(render_markdown(leaderboard(models)))
    return dg.MaterializeResult(metadata=metadata)
