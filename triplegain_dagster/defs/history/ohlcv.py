"""Historical trades and candles, backfilled over REST one day and symbol at a time.

Kraken's ``OHLC`` endpoint only returns the 720 most recent intervals, so older candles are
rebuilt from the full trade history, paged through ``Trades`` (see ``triplegain_core.adapters.kraken.rest``). A
partition writes its day's trades (insert-or-ignore) and the candles of every timeframe built
from them (1m to 1d; buckets align on UTC midnight, so a day holds whole buckets), upserted on
their natural key, so rerunning a partition, or running it over days the streamer already
stored, leaves one row per trade and per minute. A minute without trades is a quiet candle
(flat at the close before it, as Kraken publishes it) when the trades around it say so: the
day's own, the last stored one before the day and the first one after it (stored, or REST's);
a day whose neighbours are not known yet leaves its edge minutes to the next run.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from triplegain_core.marketdata.gaps import MissedInterval, repaired_candles
from triplegain_core.model.market import (
    TIMEFRAMES,
    TRADED_SYMBOLS,
    Trade,
    datetime_to_us,
    us_to_datetime,
)
from triplegain_core.storage.market_store import MarketStore
from triplegain_dagster import groups
from triplegain_dagster.resources import ExchangeResource, PostgresResource

if TYPE_CHECKING:  # ccxt is imported by the backfill's step only (see ExchangeResource)
    from triplegain_core.adapters.kraken.rest import RestCallStats

HISTORY_START_DATE = "2025-01-01"
WRITE_CHUNK = 20_000  # trades per COPY batch: bounded memory on the database side

history_partitions = dg.MultiPartitionsDefinition({
    "date": dg.DailyPartitionsDefinition(start_date=HISTORY_START_DATE),
    "symbol": dg.StaticPartitionsDefinition(list(TRADED_SYMBOLS)),
})


class OhlcvHistoryConfig(dg.Config):
    """Run configuration of ``ohlcv_history``."""

    log_every_pages: int = Field(default=10, ge=1,
                                 description="Log the progress every this many REST pages.")


async def _fetch_day(
    context: dg.AssetExecutionContext, exchange: ExchangeResource, symbol: str, start_us: int,
    end_us: int, log_every: int,
) -> tuple[list[Trade], tuple[Trade, ...], int, "RestCallStats"]:
    """Every trade of ``symbol`` in ``[start_us, end_us)`` and the first one after (when it has
    printed), the pages it took, the call stats."""
    trades: list[Trade] = []
    pages = 0
    async with exchange.client() as rest:
        async for page in rest.trade_pages(symbol, start_us, end_us):
            pages += 1
            trades.extend(page.trades)
            if pages % log_every == 0 and trades:
                done = (trades[-1].ts_us - start_us) / (end_us - start_us)
                context.log.info("%s: %d pages, %d trades, %.0f%% of the day (%d retries)",
                                 symbol, pages, len(trades), 100 * done, rest.stats.retries)
        # The cursor is in nanoseconds and exclusive: the first trade at or after the end.
        following = await rest.trades_page(symbol, end_us * 1000 - 1)
    return trades, following.trades[:1], pages, rest.stats


@dg.asset(
    group_name=groups.HISTORY,
    partitions_def=history_partitions,
    kinds={"postgres"},
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
    description="One day of one symbol's trades and candles (1m..1d), backfilled over REST (ccxt).",
)
def ohlcv_history(
    context: dg.AssetExecutionContext,
    config: OhlcvHistoryConfig,
    postgres: PostgresResource,
    exchange: ExchangeResource,
) -> dg.MaterializeResult:
    """Page through the day's trades, store them and the candles rebuilt from them."""
    keys = context.partition_key.keys_by_dimension
    symbol = keys["symbol"]
    day = datetime.fromisoformat(keys["date"]).replace(tzinfo=UTC)
    start_us, end_us = datetime_to_us(day), datetime_to_us(day + timedelta(days=1))
    context.log.info("backfilling %s on %s from %s", symbol, keys["date"],
                     exchange.base_url or exchange.exchange_id)
    trades, following, pages, stats = asyncio.run(
        _fetch_day(context, exchange, symbol, start_us, end_us, config.log_every_pages))
    with postgres.connect() as conn:
        store = MarketStore(conn)
        around = store.trades_around(symbol, us_to_datetime(start_us), us_to_datetime(end_us))
        candles = repaired_candles(MissedInterval(symbol, start_us, end_us),
                                   [*around, *trades, *following], TIMEFRAMES)
        for chunk in range(0, len(trades), WRITE_CHUNK):
            store.write_trades(trades[chunk:chunk + WRITE_CHUNK])
        store.write_candles(candles)
    context.log.info("%s %s: %d trades in %d pages, %d candles written", symbol, keys["date"],
                     len(trades), pages, len(candles))
    per_timeframe = {tf: sum(c.timeframe == tf for c in candles) for tf in TIMEFRAMES}
    return dg.MaterializeResult(metadata={
        "symbol": symbol,
        "date": keys["date"],
        "trades": len(trades),
        "pages": pages,
        "candles": len(candles),
        **{f"candles_{tf}": count for tf, count in per_timeframe.items()},
        "minutes_without_trades": 24 * 60 - sum(c.timeframe == "1m" and not c.quiet
                                                  for c in candles),
        "quiet_minutes": sum(c.timeframe == "1m" and c.quiet for c in candles),
        "rest_calls": stats.calls,
        "rest_retries": stats.retries,
        "rate_limited": stats.rate_limited,
        "rejected_rows": stats.rejected_rows,
        "first_trade": (dg.MetadataValue.timestamp(trades[0].ts_us / 1e6) if trades
                        else dg.MetadataValue.text("none")),
        "last_trade": (dg.MetadataValue.timestamp(trades[-1].ts_us / 1e6) if trades
                       else dg.MetadataValue.text("none")),
    })

