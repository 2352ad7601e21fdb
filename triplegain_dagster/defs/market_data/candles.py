"""The 1-minute candles the streamer and the history backfill write.

Their data-quality checks live in ``triplegain_dagster.defs.market_data.market_quality``.
"""

import dagster as dg

from triplegain_core.reporting.reports import markdown_table
from triplegain_dagster import groups
from triplegain_dagster.defs.market_data.trades import market_trades
from triplegain_dagster.resources import PostgresResource

TIMEFRAME = "1m"

# Runs of missing minutes: consecutive stored minute buckets of a symbol more than a minute apart.
_GAPS_SQL = """
SELECT symbol, prev AS after, bucket AS before,
       (extract(epoch FROM bucket - prev) / 60)::bigint - 1 AS missing_minutes
FROM (SELECT symbol, bucket, lag(bucket) OVER (PARTITION BY symbol ORDER BY bucket) AS prev
      FROM (SELECT DISTINCT symbol, date_trunc('minute', open_time) AS bucket
            FROM candles WHERE timeframe = %(tf)s) AS buckets) AS steps
WHERE bucket - prev > interval '1 minute'
"""

_COVERAGE_SQL = f"""
SELECT c.symbol, count(*), min(c.open_time), max(c.open_time),
       count(DISTINCT date_trunc('minute', c.open_time)),
       coalesce(max(g.missing), 0)::bigint, coalesce(max(g.runs), 0)::bigint
FROM candles c
LEFT JOIN (SELECT symbol, sum(missing_minutes) AS missing, count(*) AS runs
           FROM ({_GAPS_SQL}) AS gaps GROUP BY symbol) g USING (symbol)
WHERE c.timeframe = %(tf)s GROUP BY c.symbol ORDER BY c.symbol
"""


@dg.asset(
    group_name=groups.MARKET_DATA,
    deps=[market_trades],
    kinds={"postgres"},
    description="1-minute OHLCV candles of the streamer and the backfill (table `candles`, 1m).",
)
def candles_1m(postgres: PostgresResource) -> dg.MaterializeResult:
    """Observe the stored candles: rows, window, covered and missing minutes per symbol."""
    with postgres.connect() as conn:
        rows = conn.execute(_COVERAGE_SQL, {"tf": TIMEFRAME}).fetchall()
    coverage = (
        markdown_table(
            ["symbol", "rows", "first open (UTC)", "last open (UTC)", "covered minutes",
             "missing minutes", "gaps"],
            [
                [symbol, count, f"{first:%Y-%m-%d %H:%M}", f"{last:%Y-%m-%d %H:%M}", covered,
                 missing, gaps]
                for symbol, count, first, last, covered, missing, gaps in rows
            ],
        )
        if rows
        else "No 1-minute candles stored yet: start the streamer or a backfill."
    )
    return dg.MaterializeResult(
        metadata={
            "coverage": dg.MetadataValue.md(coverage),
            "rows": sum(row[1] for row in rows),
            "symbols": len(rows),
        }
    )
