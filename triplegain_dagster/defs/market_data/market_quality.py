"""Data-quality checks of the stored candles and trades, as great-expectations suites.

Consistency checks are blocking: a broken row (two candles in one minute, an open time off
the minute, OHLC out of bounds, a price <= 0, a negative volume, a trade id going backwards in
time) fails with ERROR severity and stops the assets downstream. Completeness fails with ERROR
severity too, without blocking: a minute without trades is stored as a quiet candle (as the
exchanges publish it), so a missing minute is a true hole, and so is a hole the streamer
recorded that REST has not filled yet (it retries until it does). Freshness (the live
stream's latest row within ``max_staleness_minutes`` of now) is a warning: a stale stream is an
operations alarm, not a reason to refuse the history.

Rows checked: those within ``window_days`` of the latest stored row, so the cost stays bounded
as history grows (the backfill's partitions report their own coverage).
"""

from typing import Any

import dagster as dg
import pandas as pd
import psycopg

from triplegain_core.model.market import us_to_datetime
from triplegain_core.storage.market_tables import (
    candle_coverage,
    recent_candle_rows,
    recent_trade_rows,
    trade_coverage,
)
from triplegain_core.storage.missed_interval_store import MissedIntervalStore
from triplegain_dagster.defs.market_data.candles import TIMEFRAME, candles_1m
from triplegain_dagster.defs.market_data.expectations import (
    EXAMPLES,
    Rule,
    RuleOutcome,
    Severity,
    validate_frame,
)
from triplegain_dagster.defs.market_data.trades import market_trades
from triplegain_dagster.resources import DataQualityResource, PostgresResource

_UNIQUE = "ExpectCompoundColumnsToBeUnique"
_BETWEEN = "ExpectColumnValuesToBeBetween"
_PAIR_AT_LEAST = "ExpectColumnPairValuesAToBeGreaterThanB"

CANDLE_RULES = (
    Rule("duplicate_minute_buckets", "minute buckets holding more than one candle", _UNIQUE,
         {"column_list": ["symbol", "bucket"]}, ("symbol", "open_time"),
         distinct=("symbol", "bucket")),
    Rule("misaligned_open_times", "open_time not on a whole minute",
         "ExpectColumnValuesToBeInSet", {"column": "offset_s", "value_set": [0.0]},
         ("symbol", "open_time")),
    Rule("high_below_body", "high < max(open, close)", _PAIR_AT_LEAST,
         {"column_A": "high", "column_B": "body_top", "or_equal": True},
         ("symbol", "open_time", "open", "high", "close")),
    Rule("low_above_body", "low > min(open, close)", _PAIR_AT_LEAST,
         {"column_A": "body_bottom", "column_B": "low", "or_equal": True},
         ("symbol", "open_time", "open", "low", "close")),
    Rule("non_positive_prices", "open, high, low or close <= 0", _BETWEEN,
         {"column": "min_price", "min_value": 0, "strict_min": True},
         ("symbol", "open_time", "open", "high", "low", "close")),
    Rule("negative_volume", "volume < 0", _BETWEEN, {"column": "volume", "min_value": 0},
         ("symbol", "open_time", "volume")),
)

GAP_RULES = (
    Rule("gaps", "runs of missing minutes inside a symbol's covered window (true holes: a"
         " quiet minute is a candle)", _BETWEEN, {"column": "step_minutes", "max_value": 1},
         ("symbol", "previous", "open_time", "step_minutes")),
)

TRADE_RULES = (
    Rule("non_positive_prices", "price <= 0", _BETWEEN,
         {"column": "price", "min_value": 0, "strict_min": True},
         ("symbol", "ts", "trade_id", "price")),
    Rule("non_positive_quantities", "qty <= 0", _BETWEEN,
         {"column": "qty", "min_value": 0, "strict_min": True},
         ("symbol", "ts", "trade_id", "qty")),
    Rule("duplicate_trade_ids", "one trade id printed at two times", _UNIQUE,
         {"column_list": ["symbol", "trade_id"]}, ("symbol", "ts", "trade_id"),
         distinct=("symbol", "trade_id")),
    Rule("trade_ids_back_in_time", "a later trade with a lower id than the one before it",
         _BETWEEN, {"column": "id_step", "min_value": 1},
         ("symbol", "ts", "trade_id", "id_step")),
)


def _freshness_rule(max_minutes: float) -> Rule:
    return Rule("stale_symbols", f"latest row older than {max_minutes:g} minutes", _BETWEEN,
                {"column": "age_minutes", "max_value": max_minutes},
                ("symbol", "latest", "age_minutes"), severity=Severity.WARN)


def candle_frame(rows: list[tuple]) -> pd.DataFrame:
    """The candles with the derived columns the candle rules read."""
    frame = pd.DataFrame(rows, columns=["symbol", "open_time", "open", "high", "low", "close",
                                        "volume", "trade_count"])
    frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)
    frame["bucket"] = frame["open_time"].dt.floor("min")
    frame["offset_s"] = (frame["open_time"] - frame["bucket"]).dt.total_seconds()
    frame["previous"] = frame.groupby("symbol")["bucket"].shift()
    frame["step_minutes"] = (frame["bucket"] - frame["previous"]).dt.total_seconds() / 60
    frame["body_top"] = frame[["open", "close"]].max(axis=1)
    frame["body_bottom"] = frame[["open", "close"]].min(axis=1)
    frame["min_price"] = frame[["open", "high", "low", "close"]].min(axis=1)
    return frame


def trade_frame(rows: list[tuple]) -> pd.DataFrame:
    """The trades (ordered by symbol, time, id) with the id step to the previous trade."""
    frame = pd.DataFrame(rows, columns=["symbol", "ts", "trade_id", "price", "qty", "side"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["id_step"] = frame.groupby("symbol")["trade_id"].diff()
    return frame


def check_result(
    rows: int, outcomes: list[RuleOutcome], empty: str, extra: dict[str, Any] | None = None
) -> dg.AssetCheckResult:
    """Passed when no rule failed; ERROR when an error rule failed, else WARN."""
    failed = [outcome for outcome in outcomes if outcome.count]
    broken = any(outcome.rule.severity is Severity.ERROR for outcome in failed)
    if rows == 0:
        details = empty
    elif not failed:
        details = f"All {rows} rows pass {len(outcomes)} expectations."
    else:
        details = "\n\n".join(outcome.markdown() for outcome in failed)
    return dg.AssetCheckResult(
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR if broken else dg.AssetCheckSeverity.WARN,
        metadata={**{outcome.rule.key: outcome.count for outcome in outcomes}, **(extra or {}),
                  "details": dg.MetadataValue.md(details)},
    )


def _freshness(conn: psycopg.Connection, table: str, quality: DataQualityResource
               ) -> dg.AssetCheckResult:
    now = pd.Timestamp(quality.current_time())
    rows = ([(c.symbol, c.last_open) for c in candle_coverage(conn, TIMEFRAME)] if table == "candles"
            else [(t.symbol, t.last_time) for t in trade_coverage(conn)])
    if not rows:  # nothing stored: the live stream has never written
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN,
            metadata={"stale_symbols": 0, "now": now.isoformat(),
                      "details": dg.MetadataValue.md(f"No {table} stored: the stream never ran.")},
        )
    frame = pd.DataFrame(rows, columns=["symbol", "latest"])
    frame["latest"] = pd.to_datetime(frame["latest"], utc=True)
    frame["age_minutes"] = ((now - frame["latest"]).dt.total_seconds() / 60).round(2)
    outcomes = validate_frame(f"{table}_freshness", frame,
                              [_freshness_rule(quality.max_staleness_minutes)])
    return check_result(len(frame), outcomes, "", {
        "now": now.isoformat(),
        "max_age_minutes": float(frame["age_minutes"].max()),
    })


@dg.asset_check(
    asset=candles_1m.key,
    blocking=True,
    description="One aligned candle per minute, OHLC bounds, prices > 0, volume >= 0 (errors)."
                " great-expectations suite over the recent window.",
)
def candles_1m_consistent(
    postgres: PostgresResource, quality: DataQualityResource
) -> dg.AssetCheckResult:
    """Validate the recent 1m candles against ``CANDLE_RULES``."""
    with postgres.connect() as conn:
        rows = recent_candle_rows(conn, TIMEFRAME, quality.window_days)
    frame = candle_frame(rows)
    outcomes = validate_frame("candles_1m", frame, CANDLE_RULES) if rows else [
        RuleOutcome(rule, 0, frame) for rule in CANDLE_RULES]
    return check_result(len(frame), outcomes,
                        "No 1-minute candles stored yet: nothing to check.",
                        {"candles": len(frame)})


@dg.asset_check(
    asset=candles_1m.key,
    description="No true hole: every minute of a symbol's window has a candle (quiet minutes"
                " are candles), and no hole the streamer recorded is still waiting for REST"
                " (error, not blocking).",
)
def candles_1m_complete(
    postgres: PostgresResource, quality: DataQualityResource
) -> dg.AssetCheckResult:
    """Missing minutes in the recent 1m candles, and the recorded holes not yet filled."""
    with postgres.connect() as conn:
        rows = recent_candle_rows(conn, TIMEFRAME, quality.window_days)
        holes = MissedIntervalStore(conn).open_holes()
    frame = candle_frame(rows)
    outcomes = validate_frame("candles_1m_gaps", frame, GAP_RULES) if rows else [
        RuleOutcome(rule, 0, frame) for rule in GAP_RULES]
    gaps = frame["step_minutes"] > 1
    missing = int((frame.loc[gaps, "step_minutes"] - 1).sum())
    hole_rule = Rule("unfilled_holes", "holes the streamer recorded that REST has not filled"
                     " yet (retried with a backoff)", _BETWEEN, {},
                     ("symbol", "from", "to", "missing trades", "attempts", "last error"))
    examples = pd.DataFrame(
        [(h.interval.symbol, us_to_datetime(h.interval.from_us), us_to_datetime(h.interval.to_us),
          h.interval.trades, h.attempts, h.last_error) for h in holes[:EXAMPLES]],
        columns=list(hole_rule.columns))
    outcomes.append(RuleOutcome(hole_rule, len(holes), examples))
    return check_result(len(frame) or len(holes), outcomes,
                        "No 1-minute candles stored yet: nothing to check.",
                        {"candles": len(frame), "missing_minutes": missing})


@dg.asset_check(
    asset=market_trades.key,
    blocking=True,
    description="Prices and quantities > 0, one time per trade id, ids rising with time."
                " great-expectations suite over the recent window.",
)
def market_trades_consistent(
    postgres: PostgresResource, quality: DataQualityResource
) -> dg.AssetCheckResult:
    """Validate the recent trades against ``TRADE_RULES``."""
    with postgres.connect() as conn:
        rows = recent_trade_rows(conn, quality.window_days)
    frame = trade_frame(rows)
    outcomes = validate_frame("market_trades", frame, TRADE_RULES) if rows else [
        RuleOutcome(rule, 0, frame) for rule in TRADE_RULES]
    return check_result(len(frame), outcomes, "No trades stored yet: nothing to check.",
                        {"trades": len(frame)})


@dg.asset_check(
    asset=candles_1m.key,
    description="The latest 1m candle of every symbol is recent (warning when stale).",
)
def candles_1m_fresh(
    postgres: PostgresResource, quality: DataQualityResource
) -> dg.AssetCheckResult:
    """Every symbol's latest candle opened within ``max_staleness_minutes`` of now."""
    with postgres.connect() as conn:
        return _freshness(conn, "candles", quality)


@dg.asset_check(
    asset=market_trades.key,
    description="The latest trade of every symbol is recent (warning when stale).",
)
def market_trades_fresh(
    postgres: PostgresResource, quality: DataQualityResource
) -> dg.AssetCheckResult:
    """Every symbol's latest trade within ``max_staleness_minutes`` of now."""
    with postgres.connect() as conn:
        return _freshness(conn, "trades", quality)
