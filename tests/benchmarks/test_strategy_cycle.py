"""BENCH strategy_cycle_us: one strategy cycle over the three pairs and every built-in strategy.

Each measured cycle runs every strategy on every pair of a fresh snapshot: bounded rings
(300 candles of 1m, 5m and 1h per pair, real prices) and trade rings (the last 200 real
trades) cut into windows, a book laid around the last trade. Two kinds of cycle:

- ``strategy_cycle_us``: a candle closes on every series, so every strategy computes (the
  worst case, once a minute live);
- ``strategy_cycle_steady_us``: only the book and trades moved, as on the other cycles of a
  100 ms loop; the runner skips the candle strategies whose inputs did not change.

Snapshot building (nine candle and three trade window copies) is timed apart as
``strategy_snapshot_build_us``; feeding the rings stands for the ingest side and is not timed.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pandas as pd

from triplegain_core.marketdata.snapshot import (
    BookLevel,
    BookTop,
    CandleBuffer,
    MarketSnapshot,
    TradeBuffer,
)
from triplegain_core.model.market import Candle, Side, Trade, timeframe_us
from triplegain_core.strategies.registry import discover_strategies
from triplegain_core.strategies.runner import StrategyRunner

PAIRS = {"BTC/USDT": 50_000.0, "XRP/USDT": 1.0, "XRP/BTC": 2e-5}  # price scale of each pair
FILES = {"1m": "binance_xrp-eth_1m.parquet", "5m": "binance_xrp-usdt-perp_5m.parquet",
         "1h": "binance_xrp-usdt-perp_1h.parquet"}
CAPACITY = 300
CYCLES = 1000
TRADES_KEPT = 200
NEW_TRADES = 7
T0 = 1_700_000_000_000_000


def _frames(folder: Path) -> dict[str, pd.DataFrame]:
    return {tf: pd.read_parquet(folder / name) for tf, name in FILES.items()}


def _candle(frame: pd.DataFrame, symbol: str, timeframe: str, scale: float, index: int) -> Candle:
    """The file's candle ``index`` (wrapping), re-timed so the series keeps going forward."""
    row = frame.iloc[index % len(frame)]
    return Candle(symbol, timeframe, T0 + index * timeframe_us(timeframe), row.open * scale, row.high * scale,
                  row.low * scale, row.close * scale, float(row.volume), 0)


def _book(symbol: str, price: float, ts_us: int, levels: int = 10) -> BookTop:
    step = price * 0.0005
    return BookTop(symbol, ts_us,
                   bids=tuple(BookLevel(price - step * (i + 1), 1.0 + i) for i in range(levels)),
                   asks=tuple(BookLevel(price + step * (i + 1), 1.5 + i) for i in range(levels)))


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def test_strategy_cycle_us(shared_data: Path) -> None:
    frames = _frames(shared_data)
    trades_frame = pd.read_parquet(shared_data / "binance_xrp-eth_trades.parquet")
    raw_trades = list(trades_frame.itertuples())
    reference = float(trades_frame["price"].iloc[0])
    # Pre-built candles, so the measurement is the loop's work, not pandas row access.
    total = CAPACITY + CYCLES
    candles = {(symbol, tf): [_candle(frame, symbol, tf, scale, i) for i in range(total)]
               for symbol, scale in PAIRS.items() for tf, frame in frames.items()}
    catalog = discover_strategies(entry_point_group=None)
    runner = StrategyRunner(catalog.strategies)
    buffers = {key: CandleBuffer(key[0], key[1], CAPACITY) for key in candles}
    for key, buffer in buffers.items():
        buffer.extend(candles[key][:CAPACITY])

    tapes = {symbol: TradeBuffer(symbol, TRADES_KEPT) for symbol in PAIRS}
    next_trade = 0

    def feed(ts_us: int) -> dict[str, BookTop]:
        """What the ingest side does between cycles (not timed): new trades, a new book."""
        nonlocal next_trade
        for _ in range(NEW_TRADES):
            row = raw_trades[next_trade % len(raw_trades)]
            for symbol, scale in PAIRS.items():
                tapes[symbol].append(Trade(symbol, next_trade, ts_us, row.price * scale / reference, row.amount,
                                           Side(row.side)))
            next_trade += 1
        return {symbol: _book(symbol, float(tapes[symbol].window().price[-1]), ts_us)
                for symbol in PAIRS}

    def snapshot(ts_us: int, books: dict[str, BookTop]) -> MarketSnapshot:
        windows = {key: buffer.window() for key, buffer in buffers.items()}
        trades = {symbol: tape.window() for symbol, tape in tapes.items()}
        return MarketSnapshot(ts_us=ts_us, candles=windows, books=books, trades=trades)

    feed(T0)
    full: list[float] = []
    steady: list[float] = []
    build: list[float] = []
    signals = 0
    for cycle in range(CYCLES):
        for key, buffer in buffers.items():
            buffer.append(candles[key][CAPACITY + cycle])
        ts = max(buffer.window().last_close_time_us for buffer in buffers.values())
        books = feed(ts)
        started = time.perf_counter()
        fresh = snapshot(ts, books)
        built = time.perf_counter()
        signals += len(runner.run(fresh))
        finished = time.perf_counter()
        build.append((built - started) * 1e6)
        full.append((finished - built) * 1e6)
        between = snapshot(ts + 100_000, feed(ts + 100_000))  # 100 ms on: new book and trades
        started = time.perf_counter()
        signals += len(runner.run(between))
        steady.append((time.perf_counter() - started) * 1e6)
    assert sum(runner.failure_counts.values()) == 0
    assert signals > 0
    calls = sum(len(s.symbols) for s in catalog.strategies)
    print(f"\nBENCH strategy_cycle_us {statistics.median(full):.0f} us")
    print(f"BENCH strategy_cycle_p99_us {_percentile(full, 0.99):.0f} us")
    print(f"BENCH strategy_cycle_steady_us {statistics.median(steady):.0f} us")
    print(f"BENCH strategy_cycle_steady_p99_us {_percentile(steady, 0.99):.0f} us")
    print(f"BENCH strategy_snapshot_build_us {statistics.median(build):.0f} us")
    print(f"BENCH strategy_cycle_calls {calls} calls")
    print(f"BENCH strategy_cycle_signals {signals} signals")
