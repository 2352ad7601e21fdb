"""Building OHLCV candles from a stream of trades, one symbol bucket at a time.

A candle covers the half-open bucket ``[open_time, open_time + timeframe)``; open, high, low,
close are the first, highest, lowest and last price in arrival order, volume the summed qty,
trade_count the number of trades. Minutes without trades produce no candle, as the exchanges'
own candles skip them.

Late trades: a trade whose bucket is older than the symbol's forming candle cannot be applied
without reopening a candle already handed out as closed. This thin version counts it in
``late_trades`` and leaves every candle untouched (the raw trade is still the caller's to
store); amending closed candles is a later issue's job.
"""

from __future__ import annotations

from collections.abc import Iterable

from triplegain_core.market import TIMEFRAME_US, Candle, Trade


class _Forming:
    """Mutable state of one symbol's open candle (kept apart from the frozen ``Candle``)."""

    __slots__ = ("start", "open", "high", "low", "close", "volume", "count")

    def __init__(self, start: int, trade: Trade) -> None:
        self.start = start
        self.open = self.high = self.low = self.close = trade.price
        self.volume = trade.qty
        self.count = 1


class CandleAggregator:
    """Per-symbol candle state fed one trade at a time."""

    def __init__(self, timeframe: str = "1m") -> None:
        if timeframe not in TIMEFRAME_US:
            raise ValueError(f"unknown timeframe {timeframe!r}; known: {sorted(TIMEFRAME_US)}")
        self.timeframe = timeframe
        self._span_us = TIMEFRAME_US[timeframe]
        self._forming: dict[str, _Forming] = {}
        self.late_trades = 0

    def add(self, trade: Trade) -> list[Candle]:
        """Apply ``trade``; return the candle it closed (its symbol's previous bucket), if any."""
        start = trade.ts_us - trade.ts_us % self._span_us
        state = self._forming.get(trade.symbol)
        if state is not None and state.start == start:
            price = trade.price
            if price > state.high:
                state.high = price
            elif price < state.low:
                state.low = price
            state.close = price
            state.volume += trade.qty
            state.count += 1
            return []
        if state is None:
            self._forming[trade.symbol] = _Forming(start, trade)
            return []
        if start < state.start:
            self.late_trades += 1
            return []
        self._forming[trade.symbol] = _Forming(start, trade)
        return [self._candle(trade.symbol, state)]

    def forming(self) -> list[Candle]:
        """The open candles, one per symbol seen, as they stand now."""
        return [self._candle(symbol, state) for symbol, state in self._forming.items()]

    def flush(self) -> list[Candle]:
        """Close every open candle (end of stream) and forget them."""
        closed = self.forming()
        self._forming.clear()
        return closed

    def _candle(self, symbol: str, state: _Forming) -> Candle:
        return Candle(symbol, self.timeframe, state.start, state.open, state.high, state.low,
                      state.close, state.volume, state.count)


def build_candles(trades: Iterable[Trade], timeframe: str = "1m") -> list[Candle]:
    """Every candle of ``trades`` (in arrival order), including the last, still-open ones."""
    aggregator = CandleAggregator(timeframe)
    candles: list[Candle] = []
    for trade in trades:
        closed = aggregator.add(trade)
        if closed:
            candles.extend(closed)
    candles.extend(aggregator.flush())
    return candles
