"""Replay sources: the simulator's promises, trade files, and trades laid inside candles."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from triplegain_core.marketdata.candles import build_candles
from triplegain_core.marketdata.sources import (
    MarketSimulator,
    merge_by_time,
    trades_from_candles,
    trades_from_file,
)
from triplegain_core.model.market import TRADED_SYMBOLS, US_PER_MINUTE, US_PER_SECOND, Side

START = 1_767_571_200_000_000  # 2026-01-05 00:00 UTC
HOURS = 6


@pytest.fixture(scope="module")
def simulated() -> list:
    return list(MarketSimulator(seed=7, start_us=START, duration_s=HOURS * 3600))


def test_same_seed_same_trades_other_seed_other_trades(simulated: list) -> None:
    assert list(MarketSimulator(7, START, HOURS * 3600)) == simulated
    assert list(MarketSimulator(8, START, HOURS * 3600))[:50] != simulated[:50]


def test_a_subset_of_symbols_is_the_same_market(simulated: list) -> None:
    btc_only = list(MarketSimulator(7, START, HOURS * 3600, symbols=("BTC/USDT",)))
    assert btc_only == [t for t in simulated if t.symbol == "BTC/USDT"]


def test_time_order_ids_and_levels(simulated: list) -> None:
    assert all(a.ts_us <= b.ts_us for a, b in itertools.pairwise(simulated))
    assert all(START <= t.ts_us < START + HOURS * 3600 * US_PER_SECOND for t in simulated)
    by_symbol = defaultdict(list)
    for trade in simulated:
        by_symbol[trade.symbol].append(trade)
    assert set(by_symbol) == set(TRADED_SYMBOLS)
    for trades in by_symbol.values():
        assert [t.trade_id for t in trades] == list(range(1, len(trades) + 1))
        assert all(t.price > 0 and t.qty > 0 for t in trades)
        assert {t.side for t in trades} == {Side.BUY, Side.SELL}
    assert 30_000 < by_symbol["BTC/USDT"][0].price < 90_000
    assert 0.3 < by_symbol["XRP/USDT"][0].price < 0.8


def test_every_minute_of_every_symbol_has_a_candle(simulated: list) -> None:
    candles = build_candles(simulated)
    minutes = HOURS * 60
    assert len(candles) == minutes * len(TRADED_SYMBOLS)
    for symbol in TRADED_SYMBOLS:
        starts = sorted(c.open_time_us for c in candles if c.symbol == symbol)
        assert starts == [START + i * US_PER_MINUTE for i in range(minutes)]
        counts = [c.trade_count for c in candles if c.symbol == symbol]
        assert min(counts) >= 1 and 5 <= sum(counts) / len(counts) <= 20


def test_cross_rate_is_exact_within_each_second(simulated: list) -> None:
    """XRP/BTC prints XRP/USDT / BTC/USDT of the same second, to the last bit."""
    seconds: dict[int, dict[str, float]] = defaultdict(dict)
    for trade in simulated:
        seconds[trade.ts_us // US_PER_SECOND][trade.symbol] = trade.price
    triples = [prices for prices in seconds.values() if len(prices) == 3]
    assert len(triples) > 20
    for prices in triples:
        assert prices["XRP/BTC"] == prices["XRP/USDT"] / prices["BTC/USDT"]


def test_btc_and_xrp_returns_are_positively_correlated(simulated: list) -> None:
    closes = {symbol: [c.close for c in build_candles(simulated) if c.symbol == symbol]
              for symbol in ("BTC/USDT", "XRP/USDT")}
    returns = [np.diff(np.log(closes[s])) for s in ("BTC/USDT", "XRP/USDT")]
    correlation = np.corrcoef(*returns)[0, 1]
    assert 0.3 < correlation < 0.85


def test_regimes_move_the_market(simulated: list) -> None:
    btc = [t.price for t in simulated if t.symbol == "BTC/USDT"]
    assert max(btc) / min(btc) > 1.005  # the price does wander over six hours
    assert all(math.isfinite(p) for p in btc)


def test_simulator_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="minute"):
        MarketSimulator(1, START + 1, 60)
    with pytest.raises(ValueError, match="knows"):
        MarketSimulator(1, START, 60, symbols=("ETH/USDT",))


def test_partial_last_minute_stays_inside_the_window() -> None:
    trades = list(MarketSimulator(3, START, 90))
    assert all(START <= t.ts_us < START + 90 * US_PER_SECOND for t in trades)
    assert {t.ts_us // US_PER_MINUTE for t in trades} == {START // US_PER_MINUTE,
                                                           START // US_PER_MINUTE + 1}


def test_merge_by_time_keeps_time_order() -> None:
    a = list(MarketSimulator(1, START, 600, symbols=("BTC/USDT",)))
    b = list(MarketSimulator(2, START, 600, symbols=("XRP/USDT",)))
    merged = list(merge_by_time(a, b))
    assert len(merged) == len(a) + len(b)
    assert all(x.ts_us <= y.ts_us for x, y in itertools.pairwise(merged))


def test_kraken_csv_trades_get_ids_and_tick_rule_sides(shared_data: Path) -> None:
    trades = list(trades_from_file(shared_data / "kraken_bch-eur_trades.csv", "XRP/USDT"))
    raw = pd.read_csv(shared_data / "kraken_bch-eur_trades.csv")
    assert len(trades) == len(raw) == 148
    assert [t.trade_id for t in trades] == list(range(1, 149))
    assert trades[0].ts_us == int(raw["ts_s"].iloc[0]) * US_PER_SECOND
    for previous, trade in itertools.pairwise(trades):
        if trade.price > previous.price:
            assert trade.side is Side.BUY
        elif trade.price < previous.price:
            assert trade.side is Side.SELL


def test_binance_parquet_trades_keep_ids_and_sides(shared_data: Path) -> None:
    trades = list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", "XRP/ETH"))
    assert len(trades) == 12_477
    assert trades[0].trade_id == 13_519_807 and trades[0].side is Side.SELL
    assert trades[0].ts_us == 1_570_752_011_620_000


@pytest.mark.parametrize("per_candle", [4, 7])
def test_candle_trades_rebuild_the_candles(shared_data: Path, per_candle: int) -> None:
    path = shared_data / "binance_xrp-eth_1m.parquet"
    trades = list(trades_from_candles(path, "XRP/ETH", trades_per_candle=per_candle))
    source = pd.read_parquet(path)
    assert len(trades) == per_candle * len(source)
    assert all(a.ts_us < b.ts_us for a, b in itertools.pairwise(trades))
    rebuilt = [(c.open_time_us, c.open, c.high, c.low, c.close, c.volume, c.trade_count)
               for c in build_candles(trades)]
    expected = list(zip(
        source["ts"].dt.as_unit("us").astype("int64").tolist(), source["open"].tolist(),
        source["high"].tolist(), source["low"].tolist(), source["close"].tolist(),
        source["volume"].tolist(), [per_candle] * len(source), strict=True,
    ))
    assert rebuilt == expected


def test_candle_path_visits_low_first_when_closing_up(tmp_path: Path) -> None:
    path = tmp_path / "candles.csv"
    pd.DataFrame({"ts": ["2026-01-05T00:00:00Z", "2026-01-05T00:01:00Z"],
                  "open": [10.0, 12.0], "high": [13.0, 12.5], "low": [9.0, 8.0],
                  "close": [12.0, 9.0], "volume": [1.0, 0.3]}).to_csv(path, index=False)
    trades = list(trades_from_candles(path, "XRP/USDT"))
    assert [t.price for t in trades] == [10.0, 9.0, 13.0, 12.0, 12.0, 12.5, 8.0, 9.0]
    assert all(START + i * US_PER_MINUTE < t.ts_us < START + (i + 1) * US_PER_MINUTE
               for i, chunk in enumerate((trades[:4], trades[4:])) for t in chunk)
    assert sum(t.qty for t in trades[4:]) == 0.3
