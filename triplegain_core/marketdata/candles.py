"""Building OHLCV candles of several timeframes from a stream of trades, O(1) per trade.

A candle covers the half-open bucket ``[open_time, open_time + span)``, buckets aligned on the
Unix epoch. Its trades are ordered by ``(ts_us, trade_id)``, the exchange's own order: open and
close are the first and last price in that order, high and low the extremes, volume the summed
qty (in arrival order, as the exchange sums), trade_count the number of trades.

Quiet buckets. A bucket without trades is a *quiet* candle, as the exchanges publish it (Kraken's
REST ``OHLC`` and its ``ohlc`` channel): open = high = low = close = the close before it, volume
0, trade_count 0; but only once it is *known* to be quiet, never guessed: when a later trade of
the symbol arrives with no hole reported in between (the sequencer hands trades on in id order,
so consecutive trades mean nothing printed between them), or when :meth:`CandleAggregator.advance`
says the feed was alive past the bucket's end (market time: e.g. other symbols' trades on the
same unbroken connection). A bucket that overlaps a hole (:meth:`CandleAggregator.unknown`: trades
may be missing there) gets no candle: it is a true hole, for the REST repair. Nothing precedes a
symbol's first trade, so no quiet candle either.

Closing and correcting. Per symbol the *watermark* is the newest trade time seen. A bucket
closes, and :meth:`CandleAggregator.add` returns its candle, when the watermark enters a later
bucket. A trade older than the watermark by at most ``lateness_horizon_us`` is still applied:
every candle it changes in a bucket already closed is returned again, corrected (stores upsert
on ``(symbol, timeframe, open_time)``, so the second emission simply replaces the first). A trade
older than that is counted in ``late_trades`` and applied nowhere: the raw trade is still the
caller's to store, and REST gap repair rebuilds its candles.

Duplicates. The ids of each symbol's last ``trade_id_window`` trades are remembered; a trade
whose id is among them is counted in ``duplicate_trades`` and ignored. A trade that is not among
them but no newer than the newest trade already forgotten might be a forgotten duplicate: it is
counted in ``late_trades`` rather than risk counting a trade twice.

Memory per symbol is bounded: the id window, plus, per timeframe, the buckets that can still
change (those ending after ``watermark - lateness_horizon_us``; while a symbol is quiet, the
quiet buckets :meth:`CandleAggregator.advance` closed since then, so that a trade that arrives
after that evidence still corrects them).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from triplegain_core.model.market import TIMEFRAME_US, TIMEFRAMES, US_PER_MINUTE, Candle, Trade

DEFAULT_LATENESS_HORIZON_US = 5 * US_PER_MINUTE
DEFAULT_TRADE_ID_WINDOW = 50_000
# A symbol's bucket is taken for quiet on other symbols' evidence only once the feed's market
# time is this far past its end: a lost frame of the symbol shows as a gap at its next trade
# first, rather than as a quiet (or short) candle to correct.
QUIET_EVIDENCE_LAG_US = US_PER_MINUTE
_NEVER = -(2**62)  # before any timestamp: a new symbol has seen nothing


class Footprint(NamedTuple):
    """What a :class:`CandleAggregator` holds in memory: remembered trade ids, live buckets."""

    trade_ids: int
    buckets: int


class _Bar:
    """Mutable state of one bucket's candle (kept apart from the frozen ``Candle``)."""

    __slots__ = (
        "close",
        "count",
        "first_id",
        "first_ts",
        "high",
        "last_id",
        "last_ts",
        "low",
        "open",
        "start",
        "volume",
    )

    def __init__(self, start: int, trade: Trade) -> None:
        self.start = start
        self.reset(trade)

    @classmethod
    def quiet(cls, start: int, price: float) -> _Bar:
        """A bucket known to have no trade: flat at ``price`` (the close before it)."""
        bar = cls.__new__(cls)
        bar.start = start
        bar.open = bar.high = bar.low = bar.close = price
        bar.volume = 0.0
        bar.count = 0
        bar.first_ts = bar.last_ts = bar.first_id = bar.last_id = _NEVER
        return bar

    def reset(self, trade: Trade) -> None:
        """The bucket's first trade (a quiet bucket that a late trade turns out to hold)."""
        self.open = self.high = self.low = self.close = trade.price
        self.volume = trade.qty
        self.count = 1
        self.first_ts = self.last_ts = trade.ts_us
        self.first_id = self.last_id = trade.trade_id

    def apply(self, trade: Trade) -> None:
        price, ts, trade_id = trade.price, trade.ts_us, trade.trade_id
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        if ts > self.last_ts or (ts == self.last_ts and trade_id > self.last_id):
            self.close, self.last_ts, self.last_id = price, ts, trade_id
        elif ts < self.first_ts or (ts == self.first_ts and trade_id < self.first_id):
            self.open, self.first_ts, self.first_id = price, ts, trade_id
        self.volume += trade.qty
        self.count += 1


class _SymbolState:
    """One symbol's watermark, id window and live buckets per timeframe."""

    __slots__ = ("bars", "forgotten_ts", "forming", "id_order", "ids", "last_close", "unknown",
                 "watermark")

    def __init__(self, timeframes: int) -> None:
        self.watermark = _NEVER
        self.ids: dict[int, int] = {}  # trade id -> its ts_us
        self.id_order: deque[int] = deque()
        self.forgotten_ts = _NEVER  # newest ts among the ids dropped from the window
        self.bars: list[dict[int, _Bar]] = [{} for _ in range(timeframes)]
        # The first bucket not yet closed (it holds the watermark, or the market time that
        # :meth:`CandleAggregator.advance` was given; it has no bar in the latter case).
        self.forming: list[int] = [_NEVER] * timeframes
        # The newest trade's price, kept when its bucket closes (until then, that bucket's
        # close): the price of the quiet buckets after it.
        self.last_close: float | None = None
        self.unknown: list[tuple[int, int]] = []  # holes [from_us, to_us): never quiet


class CandleAggregator:
    """Candles of ``timeframes`` for every symbol, fed one trade at a time.

    ``timeframes`` is one timeframe (``"1m"``, the default) or several (e.g. ``TIMEFRAMES``).
    Counters: ``late_trades`` (beyond the horizon, or not checkable against the id window),
    ``duplicate_trades`` (id already seen) and ``corrections`` (candles emitted again).
    """

    def __init__(
        self,
        timeframes: str | Sequence[str] = "1m",
        *,
        lateness_horizon_us: int = DEFAULT_LATENESS_HORIZON_US,
        trade_id_window: int = DEFAULT_TRADE_ID_WINDOW,
    ) -> None:
        chosen = (timeframes,) if isinstance(timeframes, str) else tuple(timeframes)
        unknown = [tf for tf in chosen if tf not in TIMEFRAME_US]
        if unknown or not chosen:
            raise ValueError(
                f"unknown timeframe(s) {unknown or chosen!r}; known: {list(TIMEFRAMES)}")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"timeframes repeat: {chosen}")
        if lateness_horizon_us < 0:
            raise ValueError(f"lateness_horizon_us must be >= 0, got {lateness_horizon_us}")
        if trade_id_window < 1:
            raise ValueError(f"trade_id_window must be >= 1, got {trade_id_window}")
        self.timeframes: tuple[str, ...] = tuple(sorted(chosen, key=TIMEFRAME_US.__getitem__))
        self.lateness_horizon_us = lateness_horizon_us
        self.trade_id_window = trade_id_window
        self._spans = tuple(TIMEFRAME_US[tf] for tf in self.timeframes)
        self._symbols: dict[str, _SymbolState] = {}
        self.late_trades = 0
        self.duplicate_trades = 0
        self.corrections = 0

    def add(self, trade: Trade) -> list[Candle]:
        """Apply ``trade``; return the candles it closed or corrected (finest timeframe first),
        the quiet ones it proves included."""
        state = self._symbols.get(trade.symbol)
        if state is None:
            state = self._symbols[trade.symbol] = _SymbolState(len(self._spans))
        ts = trade.ts_us
        if ts < state.watermark - self.lateness_horizon_us:
            self.late_trades += 1
            return []
        if not self._remember(state, trade):
            return []
        if ts > state.watermark:
            state.watermark = ts
        emitted: list[Candle] = []
        symbol = trade.symbol
        for index, span in enumerate(self._spans):
            start = ts - ts % span
            bars = state.bars[index]
            bar = bars.get(start)
            forming = state.forming[index]
            if start < forming:  # a late trade in a closed bucket: its candle, corrected
                if bar is None:
                    bar = bars[start] = _Bar(start, trade)
                else:
                    if bar.count:
                        bar.apply(trade)
                    else:  # a bucket believed quiet held this trade after all
                        bar.reset(trade)
                    self.corrections += 1
                if ts >= state.watermark:  # the newest trade, in a bucket closed by advance()
                    state.last_close = bar.close
                emitted.append(self._candle(symbol, index, bar))
                self._fill_after(state, symbol, index, bar, emitted)
                continue
            if bar is not None:
                bar.apply(trade)
                continue
            bars[start] = _Bar(start, trade)
            if start > forming:
                self._close(state, symbol, index, start, emitted)
                state.forming[index] = start
                self._forget_final(bars, span, state.watermark - self.lateness_horizon_us)
        return emitted

    def advance(self, symbol: str, now_us: int) -> list[Candle]:
        """The feed of ``symbol`` was alive up to market time ``now_us`` with no hole: no trade
        before ``now_us`` is missing. Close every bucket that ends by then; those without a
        trade are quiet candles. Returns the candles closed (finest timeframe first)."""
        state = self._symbols.get(symbol)
        if state is None or state.watermark == _NEVER:
            return []  # nothing known before: nothing to be quiet after
        emitted: list[Candle] = []
        for index, span in enumerate(self._spans):
            start = now_us - now_us % span
            if start > state.forming[index]:
                self._close(state, symbol, index, start, emitted)
                state.forming[index] = start
                self._forget_final(state.bars[index], span,
                                   state.watermark - self.lateness_horizon_us)
        return emitted

    def open_bucket(self, symbol: str, timeframe: str) -> int:
        """The start of ``symbol``'s first ``timeframe`` bucket not yet closed (every candle
        before it has been returned); far in the past when nothing is known of the symbol."""
        state = self._symbols.get(symbol)
        if state is None:
            return _NEVER
        return state.forming[self.timeframes.index(timeframe)]

    def unknown(self, symbol: str, from_us: int, to_us: int) -> None:
        """Trades of ``symbol`` in ``[from_us, to_us)`` may be missing (a hole the stream could
        not close): no bucket overlapping it is taken for quiet."""
        state = self._symbols.get(symbol)
        if state is None:
            state = self._symbols[symbol] = _SymbolState(len(self._spans))
        cutoff = state.watermark - self.lateness_horizon_us - self._spans[-1]
        state.unknown = [(a, b) for a, b in state.unknown if b > cutoff]
        state.unknown.append((from_us, to_us))

    def _close(self, state: _SymbolState, symbol: str, index: int, until: int,
               emitted: list[Candle]) -> None:
        """Close the forming bucket of timeframe ``index``, and every bucket after it before
        ``until``: those have no trade, so they are quiet unless a hole overlaps them."""
        span = self._spans[index]
        bars = state.bars[index]
        forming = state.forming[index]
        bar = bars.get(forming)
        if bar is not None:  # it holds the newest trade: its close is the latest price
            emitted.append(self._candle(symbol, index, bar))
            forming += span
            state.last_close = bar.close
        price = state.last_close
        if price is None:
            return
        cutoff = state.watermark - self.lateness_horizon_us
        unknown = state.unknown
        for start in range(forming, until, span):
            if unknown and any(a < start + span and start < b for a, b in unknown):
                continue
            quiet = _Bar.quiet(start, price)
            if start + span > cutoff:  # a late trade may still land in it
                bars[start] = quiet
            emitted.append(self._candle(symbol, index, quiet))

    def _fill_after(self, state: _SymbolState, symbol: str, index: int, bar: _Bar,
                    emitted: list[Candle]) -> None:
        """A corrected closed bucket's close is the price of the quiet buckets after it, up to
        the next bucket with a trade (or a hole); those it now proves quiet are made."""
        span = self._spans[index]
        bars = state.bars[index]
        unknown = state.unknown
        price = bar.close
        for start in range(bar.start + span, state.forming[index], span):
            following = bars.get(start)
            if following is None:
                if unknown and any(a < start + span and start < b for a, b in unknown):
                    return
                following = bars[start] = _Bar.quiet(start, price)
            elif following.count:
                return
            elif following.close == price:
                continue
            else:
                following.open = following.high = following.low = following.close = price
            emitted.append(self._candle(symbol, index, following))

    def forming(self) -> list[Candle]:
        """The open candles as they stand now: one per symbol seen and timeframe whose open
        bucket has a trade yet."""
        return [
            self._candle(symbol, index, bar)
            for symbol, state in self._symbols.items()
            for index in range(len(self._spans))
            if (bar := state.bars[index].get(state.forming[index])) is not None
        ]

    def flush(self) -> list[Candle]:
        """Close every open candle (end of stream) and forget all state."""
        closed = self.forming()
        self._symbols.clear()
        return closed

    def footprint(self) -> Footprint:
        """The size of the state held, summed over symbols (bounded by the constructor's limits)."""
        return Footprint(
            sum(len(state.ids) for state in self._symbols.values()),
            sum(len(bars) for state in self._symbols.values() for bars in state.bars),
        )

    def _remember(self, state: _SymbolState, trade: Trade) -> bool:
        """Record the trade's id; False (and counted) if it is, or may be, a duplicate."""
        ids, trade_id = state.ids, trade.trade_id
        if trade_id in ids:
            self.duplicate_trades += 1
            return False
        if trade.ts_us <= state.forgotten_ts:
            self.late_trades += 1
            return False
        ids[trade_id] = trade.ts_us
        order = state.id_order
        order.append(trade_id)
        if len(order) > self.trade_id_window:
            dropped_ts = ids.pop(order.popleft())
            if dropped_ts > state.forgotten_ts:
                state.forgotten_ts = dropped_ts
        return True

    @staticmethod
    def _forget_final(bars: dict[int, _Bar], span: int, cutoff: int) -> None:
        # Only buckets ending after the cutoff can still receive a trade; the dict holds a
        # handful of them (horizon / span + 2, plus a quiet symbol's quiet buckets).
        final = [start for start in bars if start + span <= cutoff]
        for start in final:
            del bars[start]

    def _candle(self, symbol: str, index: int, bar: _Bar) -> Candle:
        return Candle(symbol, self.timeframes[index], bar.start, bar.open, bar.high, bar.low,
                      bar.close, bar.volume, bar.count)


def build_candles(
    trades: Iterable[Trade],
    timeframe: str | Sequence[str] = "1m",
    *,
    lateness_horizon_us: int = DEFAULT_LATENESS_HORIZON_US,
    trade_id_window: int = DEFAULT_TRADE_ID_WINDOW,
) -> list[Candle]:
    """The final version of every candle of ``trades`` (in arrival order), the open ones
    included, ordered by timeframe (finest first), symbol and open time.

    ``trades`` are one unbroken feed: a bucket without trades between two trades of a symbol
    is a quiet candle, and so is one that ends :data:`QUIET_EVIDENCE_LAG_US` before a later
    trade of another symbol."""
    aggregator = CandleAggregator(
        timeframe, lateness_horizon_us=lateness_horizon_us, trade_id_window=trade_id_window
    )
    latest: dict[tuple[str, str, int], Candle] = {}
    symbols: dict[str, None] = {}
    market_us = market_minute = _NEVER
    for trade in trades:
        symbols.setdefault(trade.symbol)
        for candle in aggregator.add(trade):
            latest[(candle.timeframe, candle.symbol, candle.open_time_us)] = candle
        market_us = max(market_us, trade.ts_us)
        minute = trade.ts_us // US_PER_MINUTE
        if minute > market_minute:  # the feed's time passed a minute: the others are quiet
            market_minute = minute
            for symbol in symbols:
                for candle in aggregator.advance(symbol, trade.ts_us - QUIET_EVIDENCE_LAG_US):
                    latest[(candle.timeframe, candle.symbol, candle.open_time_us)] = candle
    for symbol in symbols:  # a symbol seen after the last minute turned is behind too
        for candle in aggregator.advance(symbol, market_us - QUIET_EVIDENCE_LAG_US):
            latest[(candle.timeframe, candle.symbol, candle.open_time_us)] = candle
    for candle in aggregator.flush():
        latest[(candle.timeframe, candle.symbol, candle.open_time_us)] = candle
    rank = {tf: i for i, tf in enumerate(aggregator.timeframes)}
    return [latest[key] for key in sorted(latest, key=lambda k: (rank[k[0]], k[1], k[2]))]
