"""The strategies a process runs: discovery narrowed by the configuration and the traded symbols.

Discovery (:func:`~triplegain_core.strategies.registry.discover_strategies`) loads and
validates every candidate; this module then keeps the ones the configuration enables and
cuts each one's symbols down to those the process trades. Everything left out is reported in
the catalog's reports, with the reason, and the rest run: a broken plugin is visible in the
log, never a crash of the loop. A misspelt strategy name never gets this far:
:func:`~triplegain_core.config.load_settings` refuses the file.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from triplegain_core.config import StrategySettings
from triplegain_core.marketdata.timeframes import ANALYSIS_TIMEFRAMES
from triplegain_core.model.market import TIMEFRAME_US
from triplegain_core.strategies.registry import (
    BUILTIN_PACKAGE,
    ENTRY_POINT_GROUP,
    LoadedStrategy,
    LoadReport,
    StrategyCatalog,
    discover_strategies,
)

log = logging.getLogger(__name__)


def restrict(
    catalog: StrategyCatalog, settings: StrategySettings, symbols: Sequence[str]
) -> StrategyCatalog:
    """``catalog`` narrowed to the enabled strategies, each on the traded ``symbols`` only."""
    kept: list[LoadedStrategy] = []
    reports: list[LoadReport] = list(catalog.reports)
    enabled = None if settings.enabled is None else set(settings.enabled)
    traded = set(symbols)

    def skip(strategy: LoadedStrategy, reason: str) -> None:
        log.warning("strategy %s not run: %s", strategy.name, reason)
        reports.append(LoadReport(source=strategy.source, name=strategy.name, version=strategy.version,
                                  loaded=False, reason=reason))

    for strategy in catalog.strategies:
        if enabled is not None and strategy.name not in enabled:
            skip(strategy, "not enabled by configuration")
            continue
        own = tuple(symbol for symbol in strategy.symbols if symbol in traded)
        if not own:
            skip(strategy, f"trades none of the configured symbols {sorted(traded)}")
            continue
        kept.append(strategy if own == strategy.symbols else dataclasses.replace(strategy, symbols=own))
    loaded = {strategy.name for strategy in catalog.strategies}
    for name in sorted((enabled or set()) - loaded):
        log.error("strategy %s is enabled by configuration but was not loaded", name)
        reports.append(LoadReport(source="configuration", name=name, version=None, loaded=False,
                                  reason="enabled by configuration but not loaded"))
    return StrategyCatalog(strategies=tuple(kept), reports=tuple(reports))


def select_strategies(
    settings: StrategySettings,
    symbols: Sequence[str],
    packages: Iterable[str] = (BUILTIN_PACKAGE,),
    entry_point_group: str | None = ENTRY_POINT_GROUP,
) -> StrategyCatalog:
    """Discover the strategies of ``packages`` and the entry-point group, then :func:`restrict`."""
    catalog = discover_strategies(packages, entry_point_group, configs=settings.config, disabled=settings.disabled)
    return restrict(catalog, settings, symbols)


@dataclass(frozen=True, slots=True)
class CandleNeeds:
    """The candle series a set of strategies reads: timeframes, and how many candles of each."""

    timeframes: tuple[str, ...]
    capacity: int


def timeframe_of(strategy: LoadedStrategy) -> str | None:
    """The one candle timeframe ``strategy`` reads (its ``config.timeframe``), or None when it
    reads no candles or names no known timeframe (then it is shown every series)."""
    timeframe: object = getattr(strategy.config, "timeframe", None)
    if "candles" not in strategy.reads or not isinstance(timeframe, str) or timeframe not in TIMEFRAME_US:
        return None
    return timeframe


def candle_needs(strategies: Iterable[LoadedStrategy], minimum_capacity: int = 300) -> CandleNeeds:
    """Timeframes and window length the strategies' configs ask for.

    A strategy reading candles names its timeframe in ``config.timeframe``; one that does not
    gets every analysis timeframe. The capacity covers the largest ``window`` (or
    ``lookback`` + 1) of any config, and at least ``minimum_capacity``.
    """
    timeframes: dict[str, None] = {"1m": None}
    capacity = minimum_capacity
    for strategy in strategies:
        if "candles" not in strategy.reads:
            continue
        timeframe = timeframe_of(strategy)
        timeframes.update(dict.fromkeys(ANALYSIS_TIMEFRAMES if timeframe is None else (timeframe,)))
        for field, extra in (("window", 0), ("lookback", 1)):
            value = getattr(strategy.config, field, None)
            if isinstance(value, int):
                capacity = max(capacity, value + extra)
    ordered = tuple(sorted(timeframes, key=TIMEFRAME_US.__getitem__))
    return CandleNeeds(timeframes=ordered, capacity=capacity)
