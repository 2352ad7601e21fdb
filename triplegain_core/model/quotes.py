"""The latest market quotes of a symbol: its last trade price, the exchange's ticker and its book."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from triplegain_core.model.market import BookLevel


@dataclass(frozen=True, slots=True)
class LastPrice:
    """The latest trade price of a symbol."""

    symbol: str
    price: float
    ts_us: int


@dataclass(frozen=True, slots=True)
class Ticker:
    """The exchange's ticker of a symbol (Kraken v2 ``ticker`` channel fields)."""

    symbol: str
    ts_us: int
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float
    last: float
    volume: float
    vwap: float
    low: float
    high: float
    change: float
    change_pct: float


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """The top ``depth`` levels of a symbol's book at ``ts_us``: ``(price, qty)`` pairs, bids
    best (highest) first, asks best (lowest) first. A thin book may show fewer levels."""

    symbol: str
    ts_us: int
    depth: int
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"{self.symbol} book depth must be >= 1, got {self.depth}")
        for name, better in (("bids", float.__gt__), ("asks", float.__lt__)):
            # Any (price, qty) pairs become BookLevels once, here: readers then share them as they are.
            try:
                levels = tuple(map(BookLevel._make, getattr(self, name)))
            except TypeError:
                raise ValueError(f"{self.symbol} {name}: each level must be a (price, qty) pair") from None
            object.__setattr__(self, name, levels)
            if len(levels) > self.depth:
                raise ValueError(f"{self.symbol} {name}: {len(levels)} levels > depth {self.depth}")
            for price, qty in levels:
                if not (math.isfinite(price) and price > 0 and math.isfinite(qty) and qty > 0):
                    raise ValueError(f"{self.symbol} {name}: level {price} x {qty} is not positive")
            if any(not better(float(a[0]), float(b[0])) for a, b in itertools.pairwise(levels)):
                raise ValueError(f"{self.symbol} {name} are not ordered best first")
