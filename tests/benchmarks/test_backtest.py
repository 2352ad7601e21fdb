"""BENCH backtest_*: the live trading kernel over history, as `triplegain backtest` runs it.

The market: three pairs (BTC/USDT, XRP/USDT, XRP/BTC) of seeded random-walk 1m candles at each
pair's price scale. ``BACKTEST_BENCH_DAYS`` (default 365: a year, about 1.58 million bars, as the
issue asks) days are run for the EMA 9/21 cross and ``BACKTEST_BENCH_ALL_DAYS`` (default 7) for
every built-in strategy with the TechnicalAgent (its rate does not depend on the length once the
strategies' windows are full, and a year of it would take longer than `make bench` may). Printed:

- ``backtest_bars_per_s``: the EMA 9/21 cross (a strategy of this benchmark: LONG when the EMA 9
  crosses above the EMA 21, SHORT below), with the risk rules, fees and slippage of the default
  configuration; bars are candles of any pair.
- ``backtest_all_strategies_bars_per_s``: every built-in strategy and the TechnicalAgent together,
  their accounts shared out among one process per core as ``triplegain backtest`` runs them (the
  same trades as in one process: asserted); ``backtest_all_strategies_one_process_bars_per_s`` in one.
- ``backtest_peak_rss_mb``: the largest peak resident memory of this process and the workers after both.
- ``backtest_repeat_mismatches``: the EMA backtest run twice: 0 when the two gave the same trades.
- ``backtest_vectorbt_mismatches``: trades that differ (bar, side, size, price, fee) between the
  kernel and vectorbt's ``Portfolio.from_signals`` on the same EMA cross signals, in the
  configuration both can express (``tests/support/vectorbt_crosscheck.py`` says which and why),
  and ``backtest_vectorbt_equity_diff_usdt``, the final equities' difference.
"""

from __future__ import annotations

import os
import resource
import time

import numpy as np

from tests.support.ema_cross import ema_cross
from tests.support.vectorbt_crosscheck import compare
from triplegain_core.backtest.engine import run_backtest
from triplegain_core.backtest.history import BacktestHistory, history_from_candles
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.model.market import US_PER_MINUTE, Candle

T0 = 1_767_225_600 * 1_000_000  # 2026-01-01 00:00 UTC
PRICES = {"BTC/USDT": 60_000.0, "XRP/USDT": 0.5, "XRP/BTC": 0.5 / 60_000.0}
SYMBOLS = tuple(PRICES)
EMA_CROSS = ema_cross(SYMBOLS)


def _market(days: float, seed: int = 1) -> BacktestHistory:
    minutes = int(days * 24 * 60)
    rng = np.random.default_rng(seed)
    candles = []
    for symbol, start in PRICES.items():
        closes = start * np.exp(np.cumsum(rng.normal(0, 0.0008, minutes)))
        opens = np.concatenate([[start], closes[:-1]])
        spread = np.abs(rng.normal(0, 0.0004, minutes))
        highs, lows = np.maximum(opens, closes) * (1 + spread), np.minimum(opens, closes) * (1 - spread)
        candles += [Candle(symbol, "1m", T0 + i * US_PER_MINUTE, float(o), float(h), float(lo), float(c), 10.0, 5)
                    for i, (o, h, lo, c) in enumerate(zip(opens, highs, lows, closes, strict=True))]
    return history_from_candles(candles)


def test_backtest_speed_memory_and_repeatability() -> None:
    ema_days = float(os.environ.get("BACKTEST_BENCH_DAYS", "365"))
    all_days = float(os.environ.get("BACKTEST_BENCH_ALL_DAYS", "7"))
    market = _market(ema_days)
    plain = Settings(symbols=SYMBOLS, strategies=StrategySettings(enabled=(), technical_agent=False))
    started = time.perf_counter()
    first = run_backtest(plain, market, strategies=[EMA_CROSS])
    ema_rate = len(market.candles) / (time.perf_counter() - started)
    second = run_backtest(plain, market, strategies=[EMA_CROSS])
    fills = len(first.account("paper:ema_cross").trail.fills)
    assert fills > 10, "the EMA cross must trade for the figure to mean anything"

    everything = _market(all_days, seed=2)
    started = time.perf_counter()
    result = run_backtest(Settings(symbols=SYMBOLS), everything)
    one_process_rate = len(everything.candles) / (time.perf_counter() - started)
    workers = os.cpu_count() or 1
    started = time.perf_counter()
    shared = run_backtest(Settings(symbols=SYMBOLS), everything, workers=workers)
    all_rate = len(everything.candles) / (time.perf_counter() - started)
    assert shared.trades_hash == result.trades_hash
    # This process's peak, and the largest of the workers' (each holds the market and its accounts).
    peak_mb = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024

    print(f"\nbacktest: EMA cross {len(market.candles):,} bars ({ema_days:g} days x 3 pairs, {fills} fills);"
          f" all strategies {len(everything.candles):,} bars, {len(result.accounts)} accounts")
    print(f"BENCH backtest_bars_per_s {ema_rate:.0f} bars/s")
    print(f"BENCH backtest_all_strategies_bars_per_s {all_rate:.0f} bars/s ({workers} processes, as `triplegain"
          " backtest` runs)")
    print(f"BENCH backtest_all_strategies_one_process_bars_per_s {one_process_rate:.0f} bars/s")
    print(f"BENCH backtest_peak_rss_mb {peak_mb:.0f} MB")
    print(f"BENCH backtest_repeat_mismatches {int(first.trades_hash != second.trades_hash)} runs")
    crosscheck = compare()
    print(f"BENCH backtest_vectorbt_mismatches {crosscheck.mismatches()} trades (of {len(crosscheck.ours)})")
    print(f"BENCH backtest_vectorbt_equity_diff_usdt {abs(crosscheck.our_equity - crosscheck.their_equity):.2e} USDT")
