"""The market history a backtest runs on: closed 1m candles of one or more pairs, in market order.

A history comes from the candles stored in PostgreSQL (the streamer's and the backfill's
``candles`` table) or from a file in the formats the demo replays (a trades file, or a candles
file of any timeframe): a file's trades are laid out and built into 1m candles exactly as the
replay exchange and the streamer would build them, so a file gives the backtest the candles the
demo's executor would have traded on.

Its :attr:`BacktestHistory.data_hash` is the sha256 of every candle's values in order: two runs
on the same hash ran on the same market.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.marketdata.candles import build_candles
from triplegain_core.marketdata.sources import trades_from_source_file
from triplegain_core.model.market import Candle, datetime_to_us

_PACKED = struct.Struct("<qdddddq")


class SourceFile(BaseModel):
    """A trades or candles file standing for one symbol."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    symbol: str


class BacktestSource(BaseModel):
    """Where a backtest's candles come from, as stored with the run (enough to load them again):
    the database's 1m candles of ``symbols`` opening in ``[start, end)``, or ``files``.

    ``warmup_minutes`` of candles before ``start`` are loaded too: they only warm the kernel and
    the models' contexts up (nothing is decided on them), so the first decisions at ``start``
    see the history a live process running since before would have seen."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["database", "files"]
    symbols: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    files: tuple[SourceFile, ...] = ()
    warmup_minutes: int = Field(default=0, ge=0)

    @property
    def decide_from_us(self) -> int | None:
        """The first moment decided on (None: from the first candle)."""
        return None if self.start is None or not self.warmup_minutes else datetime_to_us(self.start)


@dataclass(frozen=True, slots=True)
class BacktestHistory:
    """Closed 1m candles ordered by close time, then by symbol (the order moments are decided in)."""

    candles: tuple[Candle, ...]
    symbols: tuple[str, ...]
    data_hash: str

    @property
    def start_us(self) -> int:
        """The first candle's open time."""
        return self.candles[0].open_time_us

    @property
    def end_us(self) -> int:
        """The last candle's close time."""
        return self.candles[-1].close_time_us


class EmptyHistory(ValueError):
    """No candle to backtest on."""


def history_from_candles(candles: Iterable[Candle], symbols: Sequence[str] | None = None) -> BacktestHistory:
    """The 1m candles among ``candles`` (of ``symbols``, default: every symbol present), in
    market order; raises :class:`EmptyHistory` when none is left."""
    wanted = None if symbols is None else frozenset(symbols)
    kept = sorted((c for c in candles if c.timeframe == "1m" and (wanted is None or c.symbol in wanted)),
                  key=lambda c: (c.close_time_us, c.symbol))
    if not kept:
        raise EmptyHistory(f"no 1m candle{'' if wanted is None else ' of ' + ', '.join(sorted(wanted))}")
    digest = hashlib.sha256()
    for candle in kept:
        digest.update(candle.symbol.encode())
        digest.update(_PACKED.pack(candle.open_time_us, candle.open, candle.high, candle.low, candle.close,
                                   candle.volume, candle.trade_count))
    present = tuple(dict.fromkeys(c.symbol for c in kept))
    return BacktestHistory(tuple(kept), tuple(s for s in (symbols or present) if s in present), digest.hexdigest())


def history_from_files(files: Sequence[SourceFile]) -> BacktestHistory:
    """The 1m candles of trades or candles files, each standing for its symbol, built from their
    trades as the streamer builds them. Each file is checked whole first: a bad value is a
    :class:`~triplegain_core.marketdata.sources.SourceFileError` naming it."""
    candles: list[Candle] = []
    for file in files:
        candles += build_candles(trades_from_source_file(Path(file.path), file.symbol), "1m")
    return history_from_candles(candles, [file.symbol for file in files])
