"""Where a restarted streamer resumes: the stored data it goes on from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from triplegain_core.marketdata.sequencer import TradeMark
from triplegain_core.model.market import TIMEFRAME_US, TIMEFRAMES, Trade, us_to_datetime
from triplegain_core.storage.market_store import MarketStore


@dataclass(frozen=True, slots=True)
class ResumeState:
    """Where a restarted streamer resumes: ``marks`` (symbol -> last stored trade) and
    ``warm_up`` (the stored trades since the start of the widest open bucket of each symbol,
    symbol after symbol, each in time order)."""

    marks: dict[str, TradeMark] = field(default_factory=dict)
    warm_up: list[Trade] = field(default_factory=list)


def resume_state(store: MarketStore, symbols: Sequence[str],
                 timeframes: Sequence[str] = TIMEFRAMES) -> ResumeState:
    """The stored state the streamer of ``symbols`` resumes from (empty when nothing is
    stored). Every candle of ``timeframes`` open at the last stored trade is rebuilt from
    these trades, so it goes on exactly where an uninterrupted stream would stand."""
    widest = max(TIMEFRAME_US[tf] for tf in timeframes)
    state = ResumeState()
    for symbol, last in store.last_trades(symbols).items():
        state.marks[symbol] = TradeMark(last.trade_id, last.ts_us)
        start = last.ts_us - last.ts_us % widest
        state.warm_up.extend(store.trades(symbol, start=us_to_datetime(start)))
    return state
