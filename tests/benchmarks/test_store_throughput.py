"""BENCH store_rows_per_s: market-data rows per second written to PostgreSQL idempotently.

500,000 trades of three symbols and the candles of every timeframe the streamer builds from
them, cut into batches the way the streamer cuts them (``write_batch_size`` trades, plus the
candles closed meanwhile and the forming ones), each batch one ``MarketStore.write_batch``
(COPY into staging tables, then upserts). Measured on the first write; the whole set is then
written a second time, which must leave every row count unchanged. Once with durable commits
(``store_rows_per_s``, the default), once with ``synchronous_commit=False``
(``store_rows_per_s_async_commit``). Runs on the machine's PostgreSQL when
TRIPLEGAIN_TEST_DATABASE_URL names one, else on the embedded server.
"""

from __future__ import annotations

import time

import numpy as np
import psycopg

from triplegain_core.config import Settings
from triplegain_core.marketdata.candles import CandleAggregator
from triplegain_core.model.market import TIMEFRAMES, TRADED_SYMBOLS, Candle, Side, Trade
from triplegain_core.storage.market_store import MarketStore

TRADES = 500_000
START_US = 1_767_571_200_000_000


def _trades(count: int, seed: int = 11) -> list[Trade]:
    rng = np.random.default_rng(seed)
    ts = START_US + np.cumsum(rng.exponential(150_000, count)).astype(np.int64)
    which = rng.integers(0, len(TRADED_SYMBOLS), count)
    steps = rng.normal(0.0, 2e-4, count)
    qty = rng.lognormal(0.0, 1.0, count)
    base = {"BTC/USDT": 60_000.0, "XRP/USDT": 0.5, "XRP/BTC": 8e-6}
    level = dict.fromkeys(TRADED_SYMBOLS, 0.0)
    next_id = dict.fromkeys(TRADED_SYMBOLS, 1)
    trades = []
    for i in range(count):
        symbol = TRADED_SYMBOLS[which[i]]
        level[symbol] += steps[i]
        trades.append(Trade(symbol, next_id[symbol], int(ts[i]),
                            base[symbol] * float(np.exp(level[symbol])), float(qty[i]),
                            Side.BUY if steps[i] >= 0 else Side.SELL, "limit"))
        next_id[symbol] += 1
    return trades


def _streamer_batches(trades: list[Trade], size: int) -> list[tuple[list[Trade], list[Candle]]]:
    aggregator = CandleAggregator(TIMEFRAMES)
    batches = []
    for start in range(0, len(trades), size):
        chunk, closed = trades[start:start + size], []
        for trade in chunk:
            closed.extend(aggregator.add(trade))
        batches.append((chunk, closed + aggregator.forming()))
    return batches


def _write_all(store: MarketStore, batches: list[tuple[list[Trade], list[Candle]]]) -> int:
    rows, step = 0, max(1, len(batches) // 5)
    for index, (trades, candles) in enumerate(batches, 1):
        rows += store.write_batch(trades, candles)
        if index % step == 0:
            print(f"  {index}/{len(batches)} batches", flush=True)
    return rows


def test_store_rows_per_s(database_url: str) -> None:
    size = Settings().write_batch_size
    batches = _streamer_batches(_trades(TRADES), size)
    expected = [TRADES, len({(c.symbol, c.timeframe, c.open_time_us)
                             for _, candles in batches for c in candles})]
    rates = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for durable in (True, False):
            conn.execute("TRUNCATE trades, candles")
            store = MarketStore(conn, synchronous_commit=durable)
            print(f"\nfirst write, synchronous_commit={'on' if durable else 'off'}")
            started = time.perf_counter()
            rows = _write_all(store, batches)
            rates[durable] = rows / (time.perf_counter() - started)
            assert [store.count_rows(t) for t in ("trades", "candles")] == expected
            print("second write (a replay)")
            assert _write_all(store, batches) == rows
            assert [store.count_rows(t) for t in ("trades", "candles")] == expected
    print(f"\nBENCH store_rows_per_s {rates[True]:.0f} rows/s")
    print(f"BENCH store_rows_per_s_async_commit {rates[False]:.0f} rows/s")
    print(f"BENCH store_rows {rows} rows")
    print(f"BENCH store_batch_size {size} trades")
