"""The state the streamer keeps per channel besides trades: the order book (CRC32-checked on
every message), the exchange's own ``ohlc`` candles (to cross-check the candles built here),
the latest ``ticker`` and the ``instrument`` list.

A book checksum mismatch invalidates the local book (nobody can read it), is counted and
logged, and the symbol is named for a fresh snapshot (the connection asks it: unsubscribe +
subscribe).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence

from streamer.ingest.stats import StreamerStats
from triplegain_core.adapters.kraken.book import BookChecksumError, InvalidBookError, KrakenBookTop, OrderBook
from triplegain_core.adapters.kraken.messages import (
    KrakenBookMessage,
    KrakenInstrumentMessage,
    KrakenInstrumentPair,
    KrakenOhlcBar,
    KrakenOhlcMessage,
    KrakenTicker,
    KrakenTickerMessage,
)
from triplegain_core.model.market import US_PER_MINUTE, BookLevel, Candle
from triplegain_core.model.quotes import BookSnapshot, Ticker

log = logging.getLogger(__name__)

OHLC_BARS_KEPT = 8  # exchange candles kept per symbol for the cross-check


class BookChannel:
    """Each symbol's local book of ``depth`` levels, and which books changed or need a fresh
    snapshot."""

    def __init__(self, symbols: Iterable[str], depth: int, stats: StreamerStats) -> None:
        self.depth = depth
        self._books = {symbol: OrderBook(symbol, depth) for symbol in symbols}
        self._stats = stats
        self._awaited: set[str] = set()  # symbols whose fresh snapshot is awaited
        self._wanted: list[str] = []
        self._changed: set[str] = set()

    def connected(self) -> None:
        """A new connection: every book waits for its snapshot."""
        for book in self._books.values():
            book.invalidate()
        self._awaited.clear()

    def on_message(self, message: KrakenBookMessage) -> None:
        """Apply a snapshot or an update; a checksum failure names the symbol for a resync."""
        stats = self._stats
        for data in message.books:
            book = self._books.get(data.symbol)
            if book is None:
                continue
            try:
                if message.kind == "snapshot":
                    self._awaited.discard(data.symbol)
                    book.apply_snapshot(data.bids, data.asks, data.checksum, data.ts_us)
                    stats.book_snapshots += 1
                else:
                    book.apply_update(data.bids, data.asks, data.checksum, data.ts_us)
                    stats.book_updates += 1
                self._changed.add(data.symbol)
            except InvalidBookError:
                continue  # updates between a mismatch and the fresh snapshot
            except BookChecksumError as exc:
                stats.book_checksum_failures += 1
                log.warning("book checksum failure #%d: %s; asking a fresh snapshot",
                            stats.book_checksum_failures, exc)
                self._wanted.append(data.symbol)

    @property
    def resync_wanted(self) -> bool:
        """Whether some book needs a fresh snapshot."""
        return bool(self._wanted)

    def take_resyncs(self) -> list[str]:
        """The symbols whose fresh snapshot must be asked now (each once until it comes)."""
        asked: list[str] = []
        for symbol in self._wanted:
            if symbol not in self._awaited:
                self._awaited.add(symbol)
                asked.append(symbol)
        self._wanted.clear()
        return asked

    def top(self, symbol: str) -> KrakenBookTop | None:
        """Best bid/ask of ``symbol``'s validated book; ``None`` while it is invalid or empty."""
        book = self._books.get(symbol)
        if book is None or not book.valid:
            return None
        return book.top()

    def take_changed(self) -> list[BookSnapshot]:
        """The validated books changed since the last call, as the hot-state contract shows them."""
        books = [snapshot for symbol in self._changed
                 if (snapshot := self._snapshot(symbol)) is not None]
        self._changed.clear()
        return books

    def _snapshot(self, symbol: str) -> BookSnapshot | None:
        """``None`` while invalid: a book that failed its checksum never reaches a consumer."""
        book = self._books[symbol]
        if not book.valid:
            return None
        bids = tuple(BookLevel(float(level.price), float(level.qty)) for level in book.bids())
        asks = tuple(BookLevel(float(level.price), float(level.qty)) for level in book.asks())
        if not bids and not asks:
            return None
        return BookSnapshot(symbol, book.ts_us or time.time_ns() // 1000, book.depth, bids, asks)


class OhlcChannel:
    """The exchange's last 1-minute candles per symbol, to cross-check the candles built here."""

    def __init__(self, symbols: Iterable[str], stats: StreamerStats) -> None:
        self._bars: dict[str, dict[int, KrakenOhlcBar]] = {symbol: {} for symbol in symbols}
        self._stats = stats

    def on_message(self, message: KrakenOhlcMessage) -> None:
        """Keep the 1-minute bars of the streamed symbols."""
        for bar in message.bars:
            bars = self._bars.get(bar.symbol)
            if bars is not None and bar.interval == 1:
                bars[bar.interval_begin_us] = bar
                if len(bars) > OHLC_BARS_KEPT:
                    del bars[min(bars)]

    def cross_check(self, candles: Sequence[Candle]) -> None:
        """Compare closed 1m candles with the exchange's own ``ohlc`` candle of that minute."""
        for candle in candles:
            if candle.timeframe != "1m":
                continue
            bar = self._bars.get(candle.symbol, {}).get(candle.open_time_us)
            if bar is None:
                continue
            self._stats.ohlc_checked += 1
            same = (bar.open == candle.open and bar.high == candle.high and bar.low == candle.low
                    and bar.close == candle.close and bar.trades == candle.trade_count
                    and math.isclose(bar.volume, candle.volume, rel_tol=1e-9))
            if not same:
                self._stats.ohlc_mismatches += 1
                log.warning("candle %s %d differs from the exchange's ohlc: %s vs %s",
                            candle.symbol, candle.open_time_us // US_PER_MINUTE, candle, bar)


class TickerChannel:
    """The latest ticker of each streamed symbol, and those not yet published."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self._symbols = frozenset(symbols)
        self.latest: dict[str, KrakenTicker] = {}
        self._fresh: dict[str, KrakenTicker] = {}

    def on_message(self, message: KrakenTickerMessage) -> None:
        """Keep the tickers of the streamed symbols."""
        for ticker in message.tickers:
            if ticker.symbol in self._symbols:
                self.latest[ticker.symbol] = self._fresh[ticker.symbol] = ticker

    def take_fresh(self) -> list[Ticker]:
        """The tickers received since the last call, as the hot-state contract shows them."""
        tickers = [Ticker(t.symbol, t.ts_us or int(time.time_ns() // 1000), t.bid, t.bid_qty,
                          t.ask, t.ask_qty, t.last, t.volume, t.vwap, t.low, t.high, t.change,
                          t.change_pct) for t in self._fresh.values()]
        self._fresh.clear()
        return tickers


class InstrumentChannel:
    """The pairs the exchange lists; a streamed symbol it does not list is logged."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self._symbols = frozenset(symbols)
        self.pairs: dict[str, KrakenInstrumentPair] = {}

    def on_message(self, message: KrakenInstrumentMessage) -> None:
        """Keep the listed pairs."""
        self.pairs.update({pair.symbol: pair for pair in message.pairs})
        missing = self._symbols - set(self.pairs)
        if missing:
            log.error("the exchange does not list %s", ", ".join(sorted(missing)))
