"""The public trades the streamer and the history backfill store (table ``trades``)."""

import dagster as dg

from triplegain_core.reporting.reports import markdown_table
from triplegain_dagster import groups
from triplegain_dagster.resources import PostgresResource

_COVERAGE_SQL = """
SELECT symbol, count(*), min(ts), max(ts), min(trade_id), max(trade_id)
FROM trades GROUP BY symbol ORDER BY symbol
"""


@dg.asset(
    group_name=groups.MARKET_DATA,
    kinds={"postgres"},
    description="Public trades written by the streamer and the REST backfill (table `trades`).",
)
def market_trades(postgres: PostgresResource) -> dg.MaterializeResult:
    """Observe the stored trades: rows, window and trade ids per symbol."""
    with postgres.connect() as conn:
        rows = conn.execute(_COVERAGE_SQL).fetchall()
    coverage = (
        markdown_table(
            ["symbol", "trades", "first (UTC)", "last (UTC)", "first id", "last id"],
            [[symbol, count, f"{first:%Y-%m-%d %H:%M:%S}", f"{last:%Y-%m-%d %H:%M:%S}", lo, hi]
             for symbol, count, first, last, lo, hi in rows],
        )
        if rows
        else "No trades stored yet: start the streamer or a backfill."
    )
    return dg.MaterializeResult(metadata={
        "coverage": dg.MetadataValue.md(coverage),
        "rows": sum(row[1] for row in rows),
        "symbols": len(rows),
    })
