"""Choosing what the replay exchange plays: the simulator or a file of real market data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from triplegain_core.marketdata.sources import MarketSimulator, trades_from_candles, trades_from_file
from triplegain_core.model.market import TRADED_SYMBOLS, US_PER_MINUTE, Trade, datetime_to_us

# A fixed simulated start, so two runs of the same seed replay the same market.
SIMULATION_START = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass(frozen=True)
class ReplaySource:
    """Trades to replay, in time order, with the symbols and the span they cover."""

    trades: Iterable[Trade]
    symbols: tuple[str, ...]
    start_us: int
    minutes: int


def replay_source(source: str, symbol: str, hours: float, seed: int) -> ReplaySource:
    """``'sim'`` for the seeded simulator, else a trades or candles file standing for ``symbol``."""
    if source == "sim":
        start_us = datetime_to_us(SIMULATION_START)
        duration_s = int(hours * 3600)
        simulator = MarketSimulator(seed=seed, start_us=start_us, duration_s=duration_s,
                                    symbols=TRADED_SYMBOLS)
        return ReplaySource(simulator, TRADED_SYMBOLS, start_us, duration_s // 60)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"replay source {path} does not exist")
    trades = list(_file_trades(path, symbol))
    if not trades:
        raise ValueError(f"replay source {path} holds no trades")
    start_us = trades[0].ts_us - trades[0].ts_us % US_PER_MINUTE
    minutes = (trades[-1].ts_us - start_us) // US_PER_MINUTE + 1
    return ReplaySource(trades, (symbol,), start_us, minutes)


def _file_trades(path: Path, symbol: str) -> Iterable[Trade]:
    columns = set(_columns(path))
    if {"open", "high", "low", "close"} <= columns:
        return trades_from_candles(path, symbol)
    return trades_from_file(path, symbol)


def _columns(path: Path) -> list[str]:
    if path.suffix == ".csv":
        return list(pd.read_csv(path, nrows=0).columns)
    return list(pd.read_parquet(path).columns)
