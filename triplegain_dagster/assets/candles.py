"""The 1-minute candles the streamer writes, and the data-quality check gating what follows."""

from collections.abc import Sequence

import dagster as dg
import psycopg

from triplegain_core.reports import markdown_table
from triplegain_dagster.resources import PostgresResource

TIMEFRAME = "1m"
EXAMPLES = 5  # rows of each violation kind shown in the check's metadata

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

# Each violation kind: (metadata key, what it means, query yielding one row per violation, whose
# first two columns order the examples).
_VIOLATIONS: tuple[tuple[str, str, str], ...] = (
    (
        "duplicate_minute_buckets",
        "minute buckets holding more than one candle",
        """SELECT symbol, date_trunc('minute', open_time) AS bucket, count(*) AS candles
           FROM candles WHERE timeframe = %(tf)s
           GROUP BY symbol, date_trunc('minute', open_time) HAVING count(*) > 1""",
    ),
    (
        "misaligned_open_times",
        "open_time not on a whole minute",
        """SELECT symbol, open_time FROM candles
           WHERE timeframe = %(tf)s AND open_time <> date_trunc('minute', open_time)""",
    ),
    ("gaps", "runs of missing minutes inside a symbol's covered window", _GAPS_SQL),
    (
        "high_below_body",
        "high < max(open, close)",
        """SELECT symbol, open_time, open, high, close FROM candles
           WHERE timeframe = %(tf)s AND high < greatest(open, close)""",
    ),
    (
        "low_above_body",
        "low > min(open, close)",
        """SELECT symbol, open_time, open, low, close FROM candles
           WHERE timeframe = %(tf)s AND low > least(open, close)""",
    ),
    (
        "negative_volume",
        "volume < 0",
        """SELECT symbol, open_time, volume FROM candles
           WHERE timeframe = %(tf)s AND volume < 0""",
    ),
)


def _violations(conn: psycopg.Connection, sql: str) -> tuple[int, list[str], Sequence[tuple]]:
    """How many rows ``sql`` yields (counted by the server), its columns and its first rows."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT count(*) OVER () AS n, q.* FROM ({sql}) AS q ORDER BY 2, 3 LIMIT %(limit)s",
            {"tf": TIMEFRAME, "limit": EXAMPLES},
        )
        columns = [col.name for col in cur.description][1:]
        rows = cur.fetchall()
    return (rows[0][0] if rows else 0), columns, [row[1:] for row in rows]


@dg.asset(
    group_name="market_data",
    kinds={"postgres"},
    description="1-minute OHLCV candles written by the streamer (table `candles`, timeframe 1m).",
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


@dg.asset_check(
    asset=candles_1m,
    blocking=True,
    description="One aligned candle per minute, OHLC bounds, volume >= 0 (errors); gaps (warning).",
)
def candles_1m_consistent(postgres: PostgresResource) -> dg.AssetCheckResult:
    """Count each kind of violation in SQL; fail if any is found.

    Broken rows (two candles in one minute, an open time off the minute, OHLC out of bounds,
    negative volume) fail with ERROR severity, which blocks the downstream assets. Gaps alone
    fail with WARN severity: the streamer writes no candle for a minute without trades (as the
    exchanges do), so quiet markets have gaps that must be seen but must not stop the features
    and reports. An empty table passes, and the ``details`` metadata says so plainly.
    """
    counts: dict[str, int] = {}
    examples: list[str] = []
    with postgres.connect() as conn:
        total = conn.execute(
            "SELECT count(*) FROM candles WHERE timeframe = %s", (TIMEFRAME,)
        ).fetchone()[0]
        for key, meaning, sql in _VIOLATIONS:
            count, columns, rows = _violations(conn, sql)
            counts[key] = count
            if count:
                table = markdown_table(columns, rows)
                examples.append(f"**{key}** ({meaning}): {count}\n\n{table}")
        missing = conn.execute(
            f"SELECT coalesce(sum(missing_minutes), 0)::bigint FROM ({_GAPS_SQL}) AS g",
            {"tf": TIMEFRAME},
        ).fetchone()[0]
    broken = any(count for key, count in counts.items() if key != "gaps")
    passed = not broken and not counts["gaps"]
    if total == 0:
        details = "No 1-minute candles stored yet: nothing to check."
    elif passed:
        details = f"All {total} candles consistent."
    else:
        details = "\n\n".join(examples)
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR if broken else dg.AssetCheckSeverity.WARN,
        metadata={"candles": total, **counts, "missing_minutes": missing,
                  "details": dg.MetadataValue.md(details)},
    )
