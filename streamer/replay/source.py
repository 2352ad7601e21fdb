"""Choosing what the replay exchange plays: the simulator or a file of real market data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from triplegain_core.errors import UserMistake
from triplegain_core.marketdata.sources import MarketSimulator, trades_from_source_file
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
    """``'sim'`` for the seeded simulator, else a trades or candles file standing for ``symbol``.

    A file is read and checked whole here, before anything else happens: an unknown ``symbol``
    is a :class:`UserMistake` (checked before the file is read), a bad file a
    :class:`~triplegain_core.marketdata.sources.SourceFileError` naming its first bad value.
    Call this before writing anything.
    """
    if source == "sim":
        start_us = datetime_to_us(SIMULATION_START)
        duration_s = int(hours * 3600)
        simulator = MarketSimulator(seed=seed, start_us=start_us, duration_s=duration_s,
                                    symbols=TRADED_SYMBOLS)
        return ReplaySource(simulator, TRADED_SYMBOLS, start_us, duration_s // 60)
    if symbol not in TRADED_SYMBOLS:
        raise UserMistake(f"--symbol {symbol}: not a traded symbol; choose one of {', '.join(TRADED_SYMBOLS)}")
    path = Path(source)
    trades = list(trades_from_source_file(path, symbol))
    start_us = trades[0].ts_us - trades[0].ts_us % US_PER_MINUTE
    minutes = (trades[-1].ts_us - start_us) // US_PER_MINUTE + 1
    return ReplaySource(trades, (symbol,), start_us, minutes)
