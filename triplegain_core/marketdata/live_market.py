"""The trading loop's own view of the market, kept up to date from the hot state.

Fed the closed 1-minute candles (in stream order), the latest trade prices and the published
books, it keeps per symbol: the 1m candle history the TechnicalAgent and the risk estimates
read, bounded :class:`~triplegain_core.marketdata.snapshot.CandleBuffer` rings of every timeframe
the strategies need (the higher ones built from the 1m candles by
:class:`~triplegain_core.marketdata.timeframes.CandleResampler`, so they exist whether or not the streamer
publishes them, and equal the exchange's own), the latest prices and books. It cuts them into
:class:`~triplegain_core.marketdata.snapshot.MarketSnapshot` s; a window is cut again only after
its series changed. A host about to hand it many candles at once (a backtest, a catch-up) may
say so first (:meth:`LiveMarket.expect`): each series is then built once for the whole batch and
its windows are cut from that as the candles are taken, not from the ring at every moment.
The public trades of the hot state's trade stream fill a bounded tape per
symbol, which the snapshots hold for the strategies that read it (order flow).
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import numpy as np

from triplegain_core.marketdata.snapshot import (
    BookTop,
    CandleBuffer,
    CandleWindow,
    MarketSnapshot,
    TradeBuffer,
    TradeWindow,
)
from triplegain_core.marketdata.timeframes import CandleResampler
from triplegain_core.model.market import TIMEFRAME_US, US_PER_MINUTE, Candle, Trade, datetime_to_us, us_to_datetime
from triplegain_core.model.quotes import BookSnapshot, LastPrice
from triplegain_core.risk.rules import MIN_RETURNS, MarketRiskEstimate

SOURCE_TIMEFRAME = "1m"
_ONE_MINUTE = timedelta(minutes=1)
# A published book belongs to a snapshot (or fills an order) only this close to its time: a
# replayed backlog of candles must not trade against the book of a later moment.
BOOK_MAX_AGE_US = 5_000_000
# Public trades kept per symbol for the strategies that read the tape.
TRADES_KEPT = 1000
# A candle window's columns, which are also the candle's attributes.
_COLUMNS = ("open_time_us", "open", "high", "low", "close", "volume")


def book_top(snapshot: BookSnapshot) -> BookTop | None:
    """The hot-state book as a :class:`BookTop`, or None when it is one-sided or crossed.

    A BookSnapshot checked its levels when it was read: they are not checked twice."""
    return BookTop.from_checked_levels(snapshot.symbol, snapshot.ts_us, snapshot.bids, snapshot.asks)


class LiveMarket:
    """Candles, prices and books of the traded symbols, as the loop has seen them."""

    def __init__(
        self,
        symbols: Iterable[str],
        timeframes: Iterable[str] = (SOURCE_TIMEFRAME,),
        capacity: int = 300,
        history_length: int = 300,
    ) -> None:
        self.symbols = tuple(symbols)
        self.timeframes = tuple(dict.fromkeys((SOURCE_TIMEFRAME, *timeframes)))
        self._higher = self.timeframes[1:]
        self.prices: dict[str, float] = {}
        self.prices_version = 0
        """A count that changes whenever a price does (what a valuation made at these prices compares)."""
        self.candle_time_us: int | None = None
        self._market_time: tuple[int, datetime] | None = None
        self.tick_time_us: int | None = None
        self._history = {symbol: deque[Candle](maxlen=history_length) for symbol in self.symbols}
        self._history_length = history_length
        # The 1m ring also holds the history the risk estimates read (see market_risk).
        self._buffers = {(s, tf): CandleBuffer(s, tf, max(capacity, history_length) if tf == SOURCE_TIMEFRAME
                                               else capacity)
                         for s in self.symbols for tf in self.timeframes}
        self._resamplers = {(s, tf): CandleResampler(s, tf, SOURCE_TIMEFRAME)
                            for s in self.symbols for tf in self.timeframes if tf != SOURCE_TIMEFRAME}
        self._windows: dict[tuple[str, str], CandleWindow] = {}
        # Per series, while a batch is expected: its candles after the batch, and how many of
        # them were taken so far (see expect).
        self._expected: dict[tuple[str, str], _Expected] = {}
        self._candle_versions = dict.fromkeys(self.timeframes, 0)
        self._newest_opens: dict[tuple[str, str], int] = {}
        self._books: dict[str, BookTop] = {}
        self._tapes = {symbol: TradeBuffer(symbol, TRADES_KEPT) for symbol in self.symbols}
        self._tape_windows: dict[str, TradeWindow] = {}
        self._risk: MarketRiskEstimate | None = None

    @property
    def market_time(self) -> datetime | None:
        """Latest close time of the candles seen: the market time snapshots are stamped with."""
        if self.candle_time_us is None:
            return None
        known = self._market_time
        if known is None or known[0] != self.candle_time_us:
            # Asked several times a moment (equity, snapshots): converted once per new time, and
            # a minute after the last one by adding a minute (exact, and cheaper than converting).
            now_us = self.candle_time_us
            now = known[1] + _ONE_MINUTE if known is not None and now_us - known[0] == US_PER_MINUTE \
                else us_to_datetime(now_us)
            known = self._market_time = (now_us, now)
        return known[1]

    def add_candle(self, candle: Candle) -> bool:
        """Take the next closed 1m candle; False (ignored) when it is not ours or not newer.

        A correction of a candle already used is not newer: what was traded on it stands.
        """
        return self._take(candle, self._higher)

    def _take(self, candle: Candle, timeframes: Iterable[str]) -> bool:
        """Take ``candle`` when it is the next 1m candle of one of ours, building ``timeframes`` from it."""
        history = self._history.get(candle.symbol)
        if history is None or candle.timeframe != SOURCE_TIMEFRAME or (
                history and candle.open_time_us <= history[-1].open_time_us):
            return False
        history.append(candle)
        self._append(candle)
        for timeframe in timeframes:
            self._resample(candle, timeframe)
        self.prices[candle.symbol] = candle.close
        self.prices_version += 1
        close_us = candle.open_time_us + US_PER_MINUTE  # a 1m candle
        # The latest close of any symbol: a late symbol's candle does not move time backwards.
        if self.candle_time_us is None or close_us > self.candle_time_us:
            self.candle_time_us = close_us
        self._risk = None
        return True

    def seed(self, history: Mapping[str, Sequence[Candle]],
             higher: Mapping[tuple[str, str], Iterable[Candle]] | None = None) -> int:
        """Fill the history with candles closed before the loop started (each symbol's 1m
        candles, oldest first), as :meth:`add_candle` would, and return how many were taken.

        Only the history is filled: nothing is decided on these candles. A higher timeframe is
        built from the first candle that opens one of its buckets, so its first candle is whole
        (the partial bucket the seed starts inside of is left out rather than taken as a candle).
        ``higher`` holds closed candles of the higher timeframes (by symbol and timeframe, as
        the streamer published them): those that closed before the first bucket the 1m
        candles build come first, so a 1h series starts with its full history rather than the
        few hours the 1m candles span.
        """
        taken = 0
        for symbol, candles in history.items():
            if candles and symbol in self._history and not self._history[symbol]:
                taken += self._seed_higher(symbol, candles, higher or {})
            started: set[str] = set()
            for candle in candles:
                # A timeframe is started by the first candle taken that opens one of its buckets.
                starting = {timeframe for timeframe in self._higher
                            if timeframe not in started and not candle.open_time_us % TIMEFRAME_US[timeframe]}
                if self._take(candle, [tf for tf in self._higher if tf in started or tf in starting]):
                    started |= starting
                    taken += 1
        return taken

    def _seed_higher(self, symbol: str, candles: Sequence[Candle],
                     higher: Mapping[tuple[str, str], Iterable[Candle]]) -> int:
        """Put the higher-timeframe candles of ``symbol`` that closed before the first bucket
        its 1m ``candles`` build into the empty buffers; how many were taken."""
        taken = 0
        first_open = candles[0].open_time_us
        for timeframe in self.timeframes[1:]:
            span = TIMEFRAME_US[timeframe]
            # The first bucket the 1m candles build: the first that one of them opens, else
            # the one they start inside of (which stays unbuilt).
            boundary = next((c.open_time_us for c in candles if c.open_time_us % span == 0),
                            first_open - first_open % span)
            for candle in higher.get((symbol, timeframe), ()):
                if candle.close_time_us <= boundary:
                    self._append(candle)
                    taken += 1
        return taken

    def _resample(self, candle: Candle, timeframe: str) -> None:
        for closed in self._resamplers[(candle.symbol, timeframe)].add(candle):
            self._append(closed)

    def candles_version(self, timeframe: str | None = None) -> int:
        """A count that changes whenever a closed candle of ``timeframe`` (any, for None) is taken."""
        return self._candle_versions.get(timeframe, 0) if timeframe is not None else sum(self._candle_versions.values())

    def _append(self, candle: Candle) -> None:
        key = (candle.symbol, candle.timeframe)
        self._candle_versions[candle.timeframe] += 1
        self._buffers[key].append(candle)
        self._newest_opens[key] = candle.open_time_us
        self._windows.pop(key, None)
        expected = self._expected.get(key)
        if expected is not None:
            row = expected.taken
            if row < len(expected.times) and expected.times[row] == candle.open_time_us:
                expected.taken = row + 1
            else:  # not the candle foreseen: this series is cut from its ring again
                del self._expected[key]

    def observe_tick(self, last: LastPrice) -> bool:
        """Take a trade price; False (ignored) when it is older than the latest candle."""
        if last.symbol not in self._history or self.candle_time_us is None or last.ts_us < self.candle_time_us:
            return False
        self.prices[last.symbol] = last.price
        self.prices_version += 1
        self.tick_time_us = max(self.tick_time_us or last.ts_us, last.ts_us)
        return True

    def add_trades(self, trades: Iterable[Trade]) -> int:
        """Take the next public trades (in stream order); returns how many were ours and new.

        A trade not newer than the last kept of its symbol (a replayed batch) is skipped.
        """
        taken = 0
        for trade in trades:
            tape = self._tapes.get(trade.symbol)
            if tape is None or not tape.follows(trade):
                continue
            tape.append(trade)
            self._tape_windows.pop(trade.symbol, None)
            taken += 1
        return taken

    def set_books(self, books: Mapping[str, BookSnapshot]) -> None:
        """Replace the known books with the latest published ones (unusable books are dropped)."""
        kept: dict[str, BookTop] = {}
        for symbol, book in books.items():
            known = self._books.get(symbol)
            if known is not None and known.ts_us == book.ts_us:
                kept[symbol] = known  # the same publication: no need to rebuild it
            elif symbol in self._history and (top := book_top(book)) is not None:
                kept[symbol] = top
        self._books = kept

    def book(self, symbol: str, when: datetime) -> BookTop | None:
        """The known book of ``symbol`` to fill an order of ``when`` against, or None when there
        is none that close to ``when``."""
        top = self._books.get(symbol)
        if top is None or abs(top.ts_us - datetime_to_us(when)) > BOOK_MAX_AGE_US:
            return None
        return top

    @property
    def newest_opens(self) -> Mapping[tuple[str, str], int]:
        """The open time of the newest closed candle of each (symbol, timeframe) series taken so
        far (a live view, read every moment: see :meth:`last_open_us`)."""
        return self._newest_opens

    def last_open_us(self, symbol: str, timeframe: str = SOURCE_TIMEFRAME) -> int | None:
        """The open time of the newest closed ``timeframe`` candle of ``symbol`` (None before
        the first)."""
        return self._newest_opens.get((symbol, timeframe))

    def ahead(self, symbol: str, candles: Sequence[Candle],
              timeframe: str = SOURCE_TIMEFRAME) -> tuple[CandleWindow, int] | None:
        """The ``timeframe`` series of ``symbol`` as the strategies' windows will hold it after
        ``candles``: the window held now, then the candles that taking those of ``candles``
        :meth:`add_candle` takes will close (built as it builds them); with the row of the
        first of those (None when there are none). Nothing is taken."""
        last = self._history[symbol][-1].open_time_us if self._history.get(symbol) else None
        new: list[Candle] = []
        for candle in candles:
            if candle.symbol == symbol and candle.timeframe == SOURCE_TIMEFRAME and (
                    last is None or candle.open_time_us > last):
                new.append(candle)
                last = candle.open_time_us
        if timeframe != SOURCE_TIMEFRAME:
            resampler = copy.deepcopy(self._resamplers[(symbol, timeframe)])
            new = [closed for candle in new for closed in resampler.add(candle)]
        if not new:
            return None
        held = self._window((symbol, timeframe))
        times = np.fromiter((c.open_time_us for c in new), dtype=np.int64, count=len(new))
        prices = np.array([(c.open, c.high, c.low, c.close, c.volume) for c in new], dtype=np.float64).T
        columns = [times, *prices]
        if held is not None:
            columns = [np.concatenate([getattr(held, name), column]) for name, column in zip(_COLUMNS, columns,
                                                                                                strict=True)]
        return CandleWindow.from_arrays(symbol, timeframe, *columns), 0 if held is None else len(held)

    def expect(self, candles: Sequence[Candle]) -> None:
        """The host will hand :meth:`add_candle` ``candles`` next (in stream order): every
        series is built once for all of them (see :meth:`ahead`), and until :meth:`settle` its
        windows are cut from that, as the candles are taken (a series whose next candle is not
        the one foreseen goes back to its ring). The windows are the same either way."""
        by_symbol: dict[str, list[Candle]] = {}
        for candle in candles:
            by_symbol.setdefault(candle.symbol, []).append(candle)
        self._expected = {}
        for symbol, timeframe in self._buffers:
            ahead = self.ahead(symbol, by_symbol.get(symbol, ()), timeframe)
            if ahead is not None:
                series, first = ahead
                self._expected[(symbol, timeframe)] = _Expected(series, first, series.open_time_us.tolist(),
                                                                self._buffers[(symbol, timeframe)].capacity)

    def expected(self, symbol: str, timeframe: str = SOURCE_TIMEFRAME) -> tuple[CandleWindow, int] | None:
        """What :meth:`ahead` said of ``symbol``'s ``timeframe`` series when the batch was
        expected (None: no batch expected, or nothing of it on that series)."""
        expected = self._expected.get((symbol, timeframe))
        return None if expected is None else (expected.series, expected.first)

    def settle(self) -> None:
        """The expected batch was taken (or abandoned): windows are cut from the rings again,
        which take the candles taken meanwhile from the foreseen series, not one by one (the
        windows already cut hold the same candles and stay)."""
        for key, expected in self._expected.items():
            if expected.taken > expected.first:
                self._buffers[key].take_pending_from(expected.series.rows(expected.first, expected.taken))
        self._expected = {}

    def history(self, symbol: str) -> list[Candle]:
        """The 1m candles of ``symbol`` held, oldest first."""
        return list(self._history[symbol])

    def recent(self, symbol: str, count: int) -> CandleWindow | None:
        """The last ``count`` 1m candles of ``symbol`` (fewer while the loop has seen fewer) as
        a window, or None before the first; the same memory the snapshots share, no copy."""
        window = self._window((symbol, SOURCE_TIMEFRAME))
        return None if window is None else window.tail(count)

    def _window(self, key: tuple[str, str]) -> CandleWindow | None:
        """The window of ``key``, cut from its buffer only after the buffer changed."""
        window = self._windows.get(key)
        if window is None:
            expected = self._expected.get(key)
            if expected is None:
                window = self._buffers[key].window()
            elif expected.taken:
                # The ring would hold the last ``capacity`` of the candles taken.
                window = expected.series.rows(max(0, expected.taken - expected.capacity), expected.taken)
            if window is not None:
                self._windows[key] = window
        return window

    def now_us(self) -> int | None:
        """The latest moment the loop knows of: the newest candle close or trade."""
        if self.candle_time_us is None:
            return None
        return max(self.candle_time_us, self.tick_time_us or self.candle_time_us)

    def snapshot(self, ts_us: int, timeframe: str | None = None, *, candles: bool = True) -> MarketSnapshot:
        """What strategies may read at ``ts_us``: the non-empty windows (of ``timeframe`` only,
        when given, so a snapshot changes only when that series does; none without ``candles``,
        for strategies that read no candles), the books of that moment."""
        windows: dict[tuple[str, str], CandleWindow] = {}
        for key in self._buffers if candles else ():
            if timeframe is not None and key[1] != timeframe:
                continue
            window = self._window(key)
            if window is not None:
                windows[key] = window
        books = {symbol: book for symbol, book in self._books.items() if abs(book.ts_us - ts_us) <= BOOK_MAX_AGE_US}
        return MarketSnapshot(ts_us=ts_us, candles=windows, books=books, trades=self._trade_windows(),
                              prices=dict(self.prices))

    def _trade_windows(self) -> dict[str, TradeWindow]:
        for symbol, tape in self._tapes.items():
            if symbol not in self._tape_windows and len(tape):
                window = tape.window()
                assert window is not None
                self._tape_windows[symbol] = window
        return dict(self._tape_windows)

    def market_risk(self) -> MarketRiskEstimate:
        """Volatility and correlations from the 1m history, each worked out when first asked
        after a new candle."""
        if self._risk is None:
            # The arrays of the 1m windows the snapshots share: no copy of the history.
            windows = {symbol: window for symbol in self.symbols
                       if (window := self.recent(symbol, self._history_length)) is not None}
            # Within an expected batch, each series' returns were worked out once for all of it.
            returns = {symbol: expected.returns(expected.taken - len(window), expected.taken)
                       for symbol, window in windows.items()
                       if (expected := self._expected.get((symbol, SOURCE_TIMEFRAME))) is not None and expected.taken}
            self._risk = MarketRiskEstimate({symbol: (w.open_time_us, w.close) for symbol, w in windows.items()},
                                            returns=returns)
        return self._risk


class _Expected:
    """A series of an expected batch: all its candles after the batch (``series``, the first
    of the batch's at row ``first``), their open times, how many rows were taken so far and
    the ring's capacity; its log returns, worked out once when first asked."""

    __slots__ = ("_invalid", "_log_returns", "capacity", "first", "series", "taken", "times")

    def __init__(self, series: CandleWindow, first: int, times: list[int], capacity: int) -> None:
        self.series = series
        self.first = first
        self.times = times
        self.taken = first
        self.capacity = capacity
        self._log_returns: np.ndarray | None = None
        self._invalid: np.ndarray | None = None

    def returns(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray] | None:
        """What :func:`~triplegain_core.risk.rules.series_returns` gives for rows ``start`` to
        ``end``: the same numbers, cut from the whole series' (log and difference work element
        by element)."""
        if self._log_returns is None or self._invalid is None:
            close = self.series.close
            with np.errstate(invalid="ignore", divide="ignore"):  # invalid closes are counted, never used
                self._log_returns = np.diff(np.log(close))
            # How many closes before each row are not positive and finite.
            self._invalid = np.concatenate(([0], np.cumsum(~((close > 0) & (close < np.inf)))))
        if end - start <= MIN_RETURNS or self._invalid[end] != self._invalid[start]:
            return None
        return self.series.open_time_us[start + 1:end], self._log_returns[start:end - 1]
