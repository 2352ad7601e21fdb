"""Higher-timeframe candles built from 1-minute candles, in batch and one candle at a time.

A higher-timeframe candle covers the UTC-aligned bucket ``[start, start + span)``: open of
its first 1m candle, highest high, lowest low, close of its last, summed volume and trade
count. Quiet source candles (no trade: flat at the close before them, no volume) count only in
a bucket that has nothing else, which is then quiet too: a quiet minute's price is not a
trade, so it never becomes an open, high or low (the exchanges' convention, as the streamer
builds its higher timeframes from the trades). Buckets with no source candle at all (a true
hole) produce nothing. This is how the exchanges build them: the real XRP/ETH 1m candles
resample to exactly the exchange's own 5m candles.

A bucket is closed once its last minute has arrived, or once a candle of a later bucket
has (a gap at the end of the bucket); the batch resampler keeps the final bucket only when
it is closed in that sense, so batch and incremental agree on every candle.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from triplegain_core.model.market import Candle, timeframe_us

log = logging.getLogger(__name__)

ANALYSIS_TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "15m", "1h")


def resample_candles(candles: pd.DataFrame, timeframe: str, *, source: str = "1m") -> pd.DataFrame:
    """Closed ``timeframe`` candles from ``source`` candles ordered by open time.

    ``candles`` has a time column (``open_time`` or ``ts``, UTC datetimes of the candle
    open) and ``open``, ``high``, ``low``, ``close``, ``volume`` (``trade_count`` is summed
    when present). The result has the same columns, one row per non-empty bucket; a final
    bucket whose last minute is missing is left out (it may still be forming).
    """
    span, source_span = timeframe_us(timeframe), timeframe_us(source)
    if span % source_span:
        raise ValueError(f"{timeframe} is not a whole number of {source} candles")
    time_column = next((c for c in ("open_time", "ts") if c in candles.columns), None)
    if time_column is None:
        raise ValueError("candles need an 'open_time' or 'ts' column")
    if candles.empty:
        return candles.iloc[0:0].copy()
    times = pd.DatetimeIndex(candles[time_column])
    open_us = times.as_unit("us").asi8
    if np.any(np.diff(open_us) <= 0):
        raise ValueError("candles must be strictly ordered by open time")
    bucket = open_us - open_us % span
    final_open_us, final_bucket = open_us[-1], bucket[-1]
    quiet = (candles["volume"] == 0) & (candles["high"] == candles["low"])
    if "trade_count" in candles.columns:
        quiet &= candles["trade_count"] == 0
    quiet = quiet.to_numpy()
    if quiet.any():  # a quiet candle counts only in a bucket of quiet candles
        traded = pd.Series(~quiet).groupby(bucket).transform("any").to_numpy()
        keep = ~quiet | ~traded
        candles, bucket = candles[keep], bucket[keep]
    aggregations = {"open": "first", "high": "max", "low": "min", "close": "last"}
    if "trade_count" in candles.columns:
        aggregations["trade_count"] = "sum"
    frame = candles[list(aggregations)].groupby(bucket, sort=True).agg(aggregations)
    frame.insert(4, "volume", _running_sums(candles["volume"].to_numpy(dtype=np.float64), bucket))
    if final_open_us + source_span < final_bucket + span:
        frame = frame.iloc[:-1]
    starts = pd.to_datetime(frame.index.to_numpy(), unit="us", utc=True).as_unit(times.unit)
    result = frame.reset_index(drop=True)
    result.insert(0, time_column, starts)
    if "symbol" in candles.columns:
        result.insert(0, "symbol", candles["symbol"].iloc[0])
    return result


def _running_sums(values: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    """Per-bucket sums added left to right, as a streaming aggregator adds them.

    pandas' grouped sum is compensated (Kahan), which differs from the running sum in the
    last bits; the resampler must equal the incremental one exactly.
    """
    sums: list[float] = []
    previous = None
    for value, key in zip(values.tolist(), bucket.tolist(), strict=True):
        if key == previous:
            sums[-1] += value
        else:
            sums.append(value)
            previous = key
    return np.array(sums, dtype=np.float64)


class CandleResampler:
    """Builds one symbol's ``timeframe`` candles from its closed ``source`` candles.

    ``add`` returns the higher-timeframe candles the new candle closes (usually none, one
    at the last minute of a bucket, two when a gap ends a bucket and the new candle is the
    last of its own). Candles of another symbol or timeframe, or not after the previous
    one, are logged, counted in ``rejected`` and ignored.
    """

    def __init__(self, symbol: str, timeframe: str, source: str = "1m") -> None:
        self.symbol = symbol
        self.timeframe = timeframe
        self.source = source
        self._span = timeframe_us(timeframe)
        self._source_span = timeframe_us(source)
        if self._span % self._source_span:
            raise ValueError(f"{timeframe} is not a whole number of {source} candles")
        self.rejected = 0
        self._last_open: int | None = None
        self._forming: list[float] | None = None  # open, high, low, close, volume
        self._start = 0
        self._count = 0
        self._quiet = False  # the forming bucket has only quiet candles so far

    def add(self, candle: Candle) -> list[Candle]:
        """Apply one closed source candle; the higher-timeframe candles it closes."""
        if candle.symbol != self.symbol or candle.timeframe != self.source:
            return self._reject(candle, f"belongs to {candle.symbol} {candle.timeframe}")
        if self._last_open is not None and candle.open_time_us <= self._last_open:
            return self._reject(candle, f"not after the previous candle ({self._last_open})")
        self._last_open = candle.open_time_us
        start = candle.open_time_us - candle.open_time_us % self._span
        closed: list[Candle] = []
        forming = self._forming
        if forming is not None and start != self._start:
            closed.append(self._emit())
            forming = None
        quiet = candle.quiet
        if forming is None or (self._quiet and not quiet):
            self._forming = [candle.open, candle.high, candle.low, candle.close, candle.volume]
            self._start = start
            self._count = candle.trade_count
            self._quiet = quiet
        elif not quiet:  # a quiet one's price is the close already held, with no volume
            forming[1] = max(forming[1], candle.high)
            forming[2] = min(forming[2], candle.low)
            forming[3] = candle.close
            forming[4] += candle.volume
            self._count += candle.trade_count
        if candle.open_time_us + self._source_span == start + self._span:
            closed.append(self._emit())
        return closed

    def _emit(self) -> Candle:
        forming = self._forming
        assert forming is not None
        self._forming = None
        return Candle(self.symbol, self.timeframe, self._start, forming[0], forming[1], forming[2],
                      forming[3], forming[4], self._count)

    def _reject(self, candle: Candle, reason: str) -> list[Candle]:
        self.rejected += 1
        log.warning("%s %s resampler: candle at %d rejected: %s", self.symbol, self.timeframe,
                    candle.open_time_us, reason)
        return []
