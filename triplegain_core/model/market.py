"""Market data domain objects: instruments, trades and candles.

Times inside the hot path are integer microseconds since the Unix epoch (UTC): they
bucket by integer division and compare without allocation. Convert to ``datetime`` at the
edges with :func:`us_to_datetime` / :func:`datetime_to_us`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

US_PER_SECOND = 1_000_000
US_PER_MINUTE = 60 * US_PER_SECOND

US_PER_HOUR = 60 * US_PER_MINUTE
US_PER_DAY = 24 * US_PER_HOUR

# The candle timeframes the streamer aggregates, finest first; buckets align on the Unix epoch,
# so a "1d" candle opens at 00:00 UTC.
TIMEFRAME_US: dict[str, int] = {
    "1m": US_PER_MINUTE,
    "5m": 5 * US_PER_MINUTE,
    "15m": 15 * US_PER_MINUTE,
    "1h": US_PER_HOUR,
    "1d": US_PER_DAY,
}
TIMEFRAMES: tuple[str, ...] = tuple(TIMEFRAME_US)


def timeframe_us(timeframe: str) -> int:
    """Span of one candle of ``timeframe`` in microseconds; ValueError for an unknown one."""
    try:
        return TIMEFRAME_US[timeframe]
    except KeyError:
        raise ValueError(f"unknown timeframe {timeframe!r}; known: {list(TIMEFRAME_US)}") from None


class Asset(StrEnum):
    """The three assets whose holdings TripleGain grows."""

    BTC = "BTC"
    USDT = "USDT"
    XRP = "XRP"


class Side(StrEnum):
    """Taker side of a trade, or side of an order."""

    BUY = "buy"
    SELL = "sell"


@dataclass(frozen=True, slots=True)
class Instrument:
    """A spot pair in the exchange's v2 spelling, e.g. ``XRP/BTC``."""

    symbol: str
    base: Asset
    quote: Asset


INSTRUMENTS: dict[str, Instrument] = {
    "BTC/USDT": Instrument("BTC/USDT", Asset.BTC, Asset.USDT),
    "XRP/USDT": Instrument("XRP/USDT", Asset.XRP, Asset.USDT),
    "XRP/BTC": Instrument("XRP/BTC", Asset.XRP, Asset.BTC),
}
TRADED_SYMBOLS: tuple[str, ...] = tuple(INSTRUMENTS)


class BookLevel(NamedTuple):
    """One price level of an order book side: a pair, so a checked book's levels are handed on
    as they are (a :class:`~triplegain_core.contracts.hot_state.BookSnapshot` makes them; a
    :class:`~triplegain_core.marketdata.snapshot.BookTop` reads them)."""

    price: float
    qty: float


@dataclass(frozen=True, slots=True)
class Trade:
    """One public trade as printed by the exchange."""

    symbol: str
    trade_id: int
    ts_us: int
    price: float
    qty: float
    side: Side
    ord_type: str = "market"


@dataclass(frozen=True, slots=True)
class Candle:
    """An OHLCV bar. ``open_time_us`` is the bucket start; ``trade_count`` the trades in it."""

    symbol: str
    timeframe: str
    open_time_us: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trade_count: int

    @property
    def quiet(self) -> bool:
        """No trade in the bucket: flat at the close before it, with no volume (the exchanges'
        convention for a quiet minute)."""
        return self.volume == 0 and self.high == self.low and not self.trade_count

    @property
    def close_time_us(self) -> int:
        """First microsecond after the bucket (the bucket is half-open)."""
        return self.open_time_us + TIMEFRAME_US[self.timeframe]

    @property
    def open_time(self) -> datetime:
        return us_to_datetime(self.open_time_us)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def us_to_datetime(ts_us: int) -> datetime:
    """Epoch microseconds to an aware UTC datetime, exactly (integer arithmetic, no float)."""
    return _EPOCH + timedelta(microseconds=ts_us)


def datetime_to_us(moment: datetime) -> int:
    """Aware datetime to epoch microseconds, exactly."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: TripleGain times are UTC-aware")
    return (moment - _EPOCH) // _ONE_US
