"""The streamer's tables observed: their coverage, and how fresh their stalest symbol is.

A sensor reads ``candles`` (1m) and ``trades`` every five minutes and reports an observation of
each asset carrying its coverage per symbol and ``dagster/last_updated_timestamp``, the latest
row of its stalest symbol: Dagster's freshness checks read that time, so one stalled pair
makes the table late, and the UI's freshness shows it. Observing is not a run: it takes no
place in the run queue.
"""

import warnings
from datetime import timedelta

import dagster as dg

from triplegain_core.model.market import TIMEFRAME_US
from triplegain_core.reporting.reports import markdown_table
from triplegain_core.storage.market_tables import candle_coverage, trade_coverage
from triplegain_dagster.defs.market_data.candles import TIMEFRAME, candles_1m
from triplegain_dagster.defs.market_data.trades import market_trades
from triplegain_dagster.resources import PostgresResource

OBSERVE_EVERY_S = 300
FRESHNESS_LIMIT = timedelta(minutes=10)
"""A table whose stalest symbol has no row for this long fails its freshness check."""

_LAST_UPDATED = "dagster/last_updated_timestamp"


def observe_market_tables(postgres: PostgresResource) -> list[dg.AssetObservation]:
    """One observation of ``candles_1m`` and one of ``market_trades``: rows, window and (for the
    candles) missing minutes per symbol; the stalest symbol's latest row as the update time."""
    with postgres.connect() as conn:
        candles, trades = candle_coverage(conn, TIMEFRAME), trade_coverage(conn)
    candle_metadata: dict[str, dg.RawMetadataValue] = {
        "rows": sum(c.candles for c in candles), "symbols": len(candles),
        "missing_minutes": sum(c.missing for c in candles),
        "coverage": dg.MetadataValue.md(markdown_table(
            ["symbol", "rows", "first open (UTC)", "last open (UTC)", "missing minutes"],
            [[c.symbol, c.candles, f"{c.first_open:%Y-%m-%d %H:%M}", f"{c.last_open:%Y-%m-%d %H:%M}",
              c.missing] for c in candles],
        ) if candles else "No 1-minute candles stored yet: start the streamer or a backfill."),
    }
    if candles:
        # A candle opens a minute before it is complete: its close is the table's news.
        candle_metadata[_LAST_UPDATED] = dg.MetadataValue.timestamp(
            min(c.last_open for c in candles) + timedelta(microseconds=TIMEFRAME_US[TIMEFRAME]))
    trade_metadata: dict[str, dg.RawMetadataValue] = {
        "rows": sum(t.trades for t in trades), "symbols": len(trades),
        "coverage": dg.MetadataValue.md(markdown_table(
            ["symbol", "trades", "first (UTC)", "last (UTC)", "first id", "last id"],
            [[t.symbol, t.trades, f"{t.first_time:%Y-%m-%d %H:%M:%S}", f"{t.last_time:%Y-%m-%d %H:%M:%S}",
              t.first_id, t.last_id] for t in trades],
        ) if trades else "No trades stored yet: start the streamer or a backfill."),
    }
    if trades:
        trade_metadata[_LAST_UPDATED] = dg.MetadataValue.timestamp(min(t.last_time for t in trades))
    return [dg.AssetObservation(candles_1m.key, metadata=candle_metadata),
            dg.AssetObservation(market_trades.key, metadata=trade_metadata)]


@dg.sensor(
    name="market_tables_observer",
    minimum_interval_seconds=OBSERVE_EVERY_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Observes the streamer's candles and trades every five minutes: coverage per symbol,"
                " and the stalest symbol's latest row for the freshness checks.",
)
def market_tables_observer(postgres: PostgresResource) -> dg.SensorResult:
    """Report the observations of the streamer's tables."""
    return dg.SensorResult(asset_events=observe_market_tables(postgres))


# Dagster calls these checks (and their sensor) superseded by FreshnessPolicy, but its policies
# judge the time of a materialization, which an external table never has; these read the
# observed data time.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    market_freshness_checks = dg.build_last_update_freshness_checks(
        assets=[candles_1m.key, market_trades.key], lower_bound_delta=FRESHNESS_LIMIT)
    market_freshness_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=market_freshness_checks, name="market_freshness_checks",
        minimum_interval_seconds=OBSERVE_EVERY_S, default_status=dg.DefaultSensorStatus.RUNNING)
