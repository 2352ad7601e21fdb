"""The market regime of each traded pair, stored in ``market_regimes``."""

from datetime import timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from triplegain_core.analysis.symbol_regime import (
    DEFAULT_REGIME_TIMEFRAME,
    SymbolRegime,
    detect_symbol_regime,
    regimes_markdown,
)
from triplegain_core.model.market import TRADED_SYMBOLS, timeframe_us
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.portfolio_store import PortfolioStore
from triplegain_dagster import groups
from triplegain_dagster.defs.analytics import ANALYTICS_FRESHNESS
from triplegain_dagster.defs.market_data.candles import TIMEFRAME, candles_1m
from triplegain_dagster.resources import PostgresResource


class MarketRegimeConfig(dg.Config):
    """Run configuration of ``market_regime``."""

    timeframe: str = Field(default=DEFAULT_REGIME_TIMEFRAME,
                           description="Timeframe the regime is read on (resampled from 1m).")
    history_bars: int = Field(
        default=1000,
        description="Bars of that timeframe read back: the indicators' warm-up plus the ATR%"
                    " history the volatility state is ranked in.",
    )


@dg.asset(
    group_name=groups.PORTFOLIO,
    freshness_policy=ANALYTICS_FRESHNESS,
    deps=[candles_1m],
    kinds={"python", "postgres"},
    description="Bull / bear / sideways with its composite score, volatility state and"
                " components, per traded pair (table `market_regimes`).",
)
def market_regime(
    context: dg.AssetExecutionContext, config: MarketRegimeConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Read each pair's regime at its last closed candle and upsert it."""
    span = timedelta(microseconds=timeframe_us(config.timeframe) * config.history_bars)
    regimes: list[SymbolRegime] = []
    warming_up: dict[str, str] = {}
    with postgres.connect() as conn:
        market = MarketStore(conn)
        last = market.last_candles(TRADED_SYMBOLS, TIMEFRAME)
        for symbol in TRADED_SYMBOLS:
            if symbol not in last:
                warming_up[symbol] = "no 1m candles stored"
                continue
            start = last[symbol].open_time - span
            candles = market.read_candles(symbol, TIMEFRAME, start=start)
            try:
                regimes.append(detect_symbol_regime(symbol, candles, config.timeframe))
            except ValueError as error:  # too little history yet: say so, store nothing
                warming_up[symbol] = str(error)
        written = PortfolioStore(conn).write_regimes(regimes)
    for item in regimes:
        context.log.info("%s %s: %s (score %+.3f, volatility %s)", item.symbol, item.timeframe,
                         item.result.regime.value, item.result.score, item.result.volatility.value)
    # Raw values of several kinds: Dagster checks them (its union of them is private).
    metadata: dict[str, Any] = {
        "timeframe": config.timeframe,
        "rows_written": written,
        "regimes": dg.MetadataValue.md(regimes_markdown(regimes, warming_up)),
    }
    for item in regimes:
        key = item.symbol.replace("/", "_").lower()
        metadata[f"{key}_regime"] = item.result.regime.value
        metadata[f"{key}_score"] = item.result.score
    return dg.MaterializeResult(metadata=metadata)
