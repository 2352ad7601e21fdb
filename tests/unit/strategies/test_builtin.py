"""The built-in strategies on real candles and on constructed series.

Real data: every candle strategy fires on a known file, each signal is consistent (levels on
the right sides, stop within 2%, the entry is the candle's close) and nothing depends on later
candles. Constructed series: the rule fires at the candle it must, and the mirror rule not.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from triplegain_core.analysis.technical_agent import TechnicalAgent
from triplegain_core.marketdata.snapshot import CandleWindow, MarketSnapshot
from triplegain_core.model import market
from triplegain_core.model.market import Candle, datetime_to_us, timeframe_us
from triplegain_core.model.signals import Direction, Signal, SignalAction
from triplegain_core.strategies.registry import LoadedStrategy, StrategyCatalog, discover_strategies
from triplegain_core.strategies.replay import replay_candles

T0 = 1_700_000_000_000_000
MAX_STOP = 0.02

CANDLE_CASES = [
    ("trend_momentum", "binance_xrp-usdt-perp_5m.parquet", "XRP/USDT"),
    ("trend_momentum", "binance_eth-btc_5m.parquet", "XRP/BTC"),
    ("volatility_breakout", "binance_xrp-usdt-perp_5m.parquet", "XRP/USDT"),
    ("volatility_breakout", "binance_eth-btc_5m.parquet", "XRP/BTC"),
    ("ema9_trend_flip", "binance_xrp-usdt-perp_1h.parquet", "XRP/USDT"),
    ("mean_reversion", "binance_xrp-usdt-perp_5m.parquet", "XRP/USDT"),
    ("mean_reversion", "binance_eth-btc_5m.parquet", "XRP/BTC"),
    ("grid_rsi", "binance_xrp-usdt-perp_5m.parquet", "XRP/USDT"),
    ("momentum_scalp", "binance_xrp-eth_1m.parquet", "XRP/BTC"),  # XRP/ETH standing in for a crypto cross
    ("ratio_trading", "binance_eth-btc_5m.parquet", "XRP/BTC"),  # ETH/BTC standing in for the XRP/BTC ratio
    ("wavetrend", "binance_xrp-usdt-perp_5m.parquet", "XRP/USDT"),
    ("wavetrend", "binance_eth-btc_5m.parquet", "XRP/BTC"),
    ("whale_sentiment", "binance_xrp-usdt-perp_5m.parquet", "XRP/USDT"),
    ("whale_sentiment", "binance_eth-btc_5m.parquet", "XRP/BTC"),
]


@pytest.fixture(scope="module")
def catalog() -> StrategyCatalog:
    return discover_strategies(entry_point_group=None)


def load_history(folder: Path, name: str, symbol: str) -> CandleWindow:
    """A real candle file as one window (timeframe from the file name)."""
    frame = pd.read_parquet(folder / name)
    timeframe = name.rsplit("_", 1)[1].removesuffix(".parquet")
    times = [datetime_to_us(ts.to_pydatetime()) for ts in frame["ts"]]
    return CandleWindow.from_arrays(symbol, timeframe, times, frame["open"], frame["high"], frame["low"],
                                    frame["close"], frame["volume"])


def constructed(close: list[float] | np.ndarray, timeframe: str = "5m", symbol: str = "XRP/USDT",
                volume: np.ndarray | None = None, open_: np.ndarray | None = None) -> CandleWindow:
    """Candles from closes: open = previous close, high/low 0.1% beyond the body."""
    close = np.asarray(close, dtype=float)
    opens = np.r_[close[0], close[:-1]] if open_ is None else np.asarray(open_, dtype=float)
    span = timeframe_us(timeframe)
    return CandleWindow.from_arrays(
        symbol, timeframe, T0 + np.arange(len(close)) * span, opens,
        np.maximum(opens, close) * 1.001, np.minimum(opens, close) * 0.999, close,
        np.ones(len(close)) if volume is None else volume,
    )


def fired(strategy: LoadedStrategy, history: CandleWindow) -> list[tuple[int, SignalAction]]:
    return [(index, signal.action) for index, signal in replay_candles(strategy, history)]


def assert_consistent(signal: Signal, history: CandleWindow, index: int, strategy: LoadedStrategy) -> None:
    assert signal.strategy == strategy.name and signal.strategy_version == strategy.version
    assert signal.symbol == history.symbol and signal.timeframe == history.timeframe
    assert datetime_to_us(signal.time) == int(history.open_time_us[index]) + timeframe_us(history.timeframe)
    assert signal.entry == history.close[index]
    assert all(math.isfinite(value) for value in signal.indicators.values()) and signal.indicators
    assert 0.0 <= signal.strength <= 1.0
    if signal.action is SignalAction.CLOSE:
        assert signal.stop_loss is None and signal.take_profit is None
        return
    assert signal.stop_loss is not None and signal.take_profit is not None
    if signal.action is SignalAction.LONG:
        assert signal.stop_loss < signal.entry < signal.take_profit
        assert signal.invalidation is None or signal.invalidation < signal.entry
    else:
        assert signal.take_profit < signal.entry < signal.stop_loss
        assert signal.invalidation is None or signal.invalidation > signal.entry
    assert abs(signal.entry - signal.stop_loss) <= MAX_STOP * signal.entry * (1 + 1e-12)
    intent = signal.to_trade_intent()
    assert signal.direction is Direction(signal.action.value) and intent.stop_loss == signal.stop_loss


@pytest.mark.parametrize(("name", "file", "symbol"), CANDLE_CASES)
def test_fires_consistent_signals_on_real_candles(
    catalog: StrategyCatalog, shared_data: Path, name: str, file: str, symbol: str
) -> None:
    strategy = catalog.get(name)
    history = load_history(shared_data, file, symbol)
    signals = replay_candles(strategy, history)
    entries = [signal for _, signal in signals if signal.action is not SignalAction.CLOSE]
    assert len(entries) > 0
    assert {s.action for s in entries} == {SignalAction.LONG, SignalAction.SHORT}
    open_action = None
    for index, signal in signals:
        assert_consistent(signal, history, index, strategy)
        if signal.action is SignalAction.CLOSE:
            assert open_action is not None  # a strategy only closes what it opened
        open_action = None if signal.action is SignalAction.CLOSE else signal.action
    ids = [signal.signal_id for _, signal in signals]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("name", "file", "symbol"), CANDLE_CASES)
def test_no_look_ahead(catalog: StrategyCatalog, shared_data: Path, name: str, file: str, symbol: str) -> None:
    strategy = catalog.get(name)
    history = load_history(shared_data, file, symbol)
    cut = len(history) * 2 // 3
    head = CandleWindow.from_arrays(symbol, history.timeframe, history.open_time_us[:cut], history.open[:cut],
                                    history.high[:cut], history.low[:cut], history.close[:cut], history.volume[:cut])
    full = replay_candles(strategy, history)
    before = replay_candles(strategy, head)
    assert before == [(index, signal) for index, signal in full if index < cut]
    assert len(full) > len(before) > 0


def test_trend_momentum_is_the_technical_agent_rule(
    catalog: StrategyCatalog, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(market.TIMEFRAME_US, "5m", 5 * market.US_PER_MINUTE)
    strategy = catalog.get("trend_momentum")
    history = load_history(shared_data, "binance_xrp-usdt-perp_5m.parquet", "XRP/USDT")
    candles = [Candle("XRP/USDT", "5m", int(t), o, h, lo, c, v, 0) for t, o, h, lo, c, v in zip(
        history.open_time_us, history.open, history.high, history.low, history.close, history.volume, strict=True)]
    agent = TechnicalAgent(strategy.config)
    ours = dict(replay_candles(strategy, history, window=300))
    theirs = {}
    for end in range(1, len(candles) + 1):
        signal = agent.analyze("XRP/USDT", candles[max(0, end - 300):end])
        if signal is not None:
            theirs[end - 1] = signal
    assert ours.keys() == theirs.keys() and ours
    for index, signal in ours.items():
        other = theirs[index]
        assert (signal.direction, signal.entry, signal.time) == (other.direction, other.entry, other.time)
        assert signal.stop_loss == pytest.approx(other.stop_loss, rel=1e-9)
        assert signal.take_profit == pytest.approx(other.take_profit, rel=1e-9)
        assert signal.strength == pytest.approx(other.strength, rel=1e-9)


# --- constructed series: the rule fires where it must, the mirror rule does not ------------

def mirrored(close: np.ndarray, pivot: float) -> np.ndarray:
    return 2 * pivot - close


def test_ema9_flip_fires_on_the_crossing_candle(catalog: StrategyCatalog) -> None:
    strategy = catalog.get("ema9_trend_flip")
    falling = np.r_[np.linspace(100.0, 80.0, 40), 90.0, 91.0]
    assert fired(strategy, constructed(falling, "1h")) == [(40, SignalAction.LONG)]
    assert fired(strategy, constructed(mirrored(falling, 100.0), "1h")) == [(40, SignalAction.SHORT)]
    # Still falling: no flip at all.
    assert fired(strategy, constructed(np.linspace(100.0, 80.0, 42), "1h")) == []


def _oscillating(n: int, level: float = 100.0, amplitude: float = 0.05) -> np.ndarray:
    return level + amplitude * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)


def test_mean_reversion_enters_on_the_stretch_and_closes_at_the_middle(catalog: StrategyCatalog) -> None:
    strategy = catalog.get("mean_reversion")
    series = np.r_[_oscillating(60), 97.0, 97.5, 98.5, 100.2, 100.1]
    result = fired(strategy, constructed(series))
    assert result == [(60, SignalAction.LONG), (63, SignalAction.CLOSE)]
    signal = replay_candles(strategy, constructed(series))[0][1]
    assert signal.take_profit == pytest.approx(signal.indicators["bb_middle"])
    assert fired(strategy, constructed(mirrored(series, 100.0))) == [(60, SignalAction.SHORT), (63, SignalAction.CLOSE)]


def test_grid_rsi_buys_a_step_down_and_targets_the_step_above(catalog: StrategyCatalog) -> None:
    strategy = catalog.get("grid_rsi")
    series = np.r_[_oscillating(60, amplitude=0.01), 99.3, 98.8, 98.85]
    results = replay_candles(strategy, constructed(series))
    assert [(i, s.action) for i, s in results] == [(60, SignalAction.LONG), (61, SignalAction.LONG)]
    first, second = results[0][1], results[1][1]
    assert first.indicators["grid_level"] == -1.0 and second.indicators["grid_level"] == -2.0
    step = first.indicators["grid_step"]
    assert first.take_profit == pytest.approx(first.indicators["anchor"])
    assert second.take_profit == pytest.approx(second.indicators["anchor"] - second.indicators["grid_step"])
    assert abs(first.entry - first.stop_loss) == pytest.approx(2 * step)
    assert fired(strategy, constructed(mirrored(series, 100.0))) == [(60, SignalAction.SHORT), (61, SignalAction.SHORT)]


def test_volatility_breakout_fires_on_the_wide_candle_only(catalog: StrategyCatalog) -> None:
    strategy = catalog.get("volatility_breakout")
    series = np.r_[_oscillating(60, amplitude=0.1), 101.5, 101.6]
    result = replay_candles(strategy, constructed(series))
    assert [(i, s.action) for i, s in result] == [(60, SignalAction.LONG)]
    assert result[0][1].invalidation == pytest.approx(result[0][1].indicators["channel_high"])
    assert fired(strategy, constructed(mirrored(series, 100.0))) == [(60, SignalAction.SHORT)]
    # The same close reached by a narrow candle (opened near it) is no breakout.
    narrow_open = np.r_[series[0], series[:-1]]
    narrow_open[60] = 101.45
    assert fired(strategy, constructed(series, open_=narrow_open)) == []


def test_momentum_scalp_needs_the_volume_burst(catalog: StrategyCatalog) -> None:
    strategy = catalog.get("momentum_scalp")
    series = np.r_[_oscillating(40), 100.6]
    burst = np.r_[np.ones(40), 3.0]
    assert fired(strategy, constructed(series, "1m", volume=burst)) == [(40, SignalAction.LONG)]
    assert fired(strategy, constructed(mirrored(series, 100.0), "1m", volume=burst)) == [(40, SignalAction.SHORT)]
    assert fired(strategy, constructed(series, "1m")) == []


def test_wavetrend_crosses_up_in_oversold_territory(catalog: StrategyCatalog) -> None:
    strategy = catalog.get("wavetrend")
    # A steady fall that accelerates, then turns: wave 1 crosses wave 2 on the second up candle.
    series = np.r_[np.linspace(300.0, 200.0, 101), 198.0, 196.0, 194.0, 192.0, 190.0, 192.0, 194.0]
    result = replay_candles(strategy, constructed(series))
    assert [(i, s.action) for i, s in result] == [(107, SignalAction.LONG)]
    assert result[0][1].indicators["wt1"] < -53.0
    assert fired(strategy, constructed(mirrored(series, 250.0))) == [(107, SignalAction.SHORT)]


def test_whale_sentiment_fades_the_spike(catalog: StrategyCatalog) -> None:
    strategy = catalog.get("whale_sentiment")
    series = np.r_[_oscillating(70, amplitude=0.1), 98.5]
    spike = np.r_[np.ones(70), 10.0]
    result = replay_candles(strategy, constructed(series, volume=spike))
    assert [(i, s.action) for i, s in result] == [(70, SignalAction.LONG)]
    signal = result[0][1]
    assert signal.invalidation == pytest.approx(min(series[69], 98.5) * 0.999)
    assert signal.stop_loss < signal.invalidation
    assert fired(strategy, constructed(mirrored(series, 100.0), volume=spike)) == [(70, SignalAction.SHORT)]
    assert fired(strategy, constructed(series)) == []  # the same move on ordinary volume


def test_ratio_trading_enters_on_the_z_cross_and_closes_at_the_mean(catalog: StrategyCatalog) -> None:
    strategy = catalog.get("ratio_trading")
    base = 1e-5 * (1 + 0.001 * np.sin(np.arange(120) * 0.7))
    series = np.r_[base, 0.97e-5, 0.975e-5, 1.0e-5]
    result = replay_candles(strategy, constructed(series, symbol="XRP/BTC"))
    assert [(i, s.action) for i, s in result] == [(120, SignalAction.LONG), (122, SignalAction.CLOSE)]
    long = result[0][1]
    assert long.indicators["z"] <= -2.0 < long.indicators["z_prev"]
    assert long.take_profit == pytest.approx(long.indicators["mean_ratio"])
    assert fired(strategy, constructed(mirrored(series, 1e-5), symbol="XRP/BTC")) == [
        (120, SignalAction.SHORT), (122, SignalAction.CLOSE)]


def test_ratio_records_the_implied_cross(catalog: StrategyCatalog) -> None:
    strategy = catalog.get("ratio_trading")
    series = np.r_[1e-5 * (1 + 0.001 * np.sin(np.arange(120) * 0.7)), 0.97e-5]
    window = constructed(series, symbol="XRP/BTC")
    xrp_usdt = constructed(np.full(len(series), 0.5))
    btc_usdt = constructed(np.full(len(series), 50_000.0), symbol="BTC/USDT")
    snapshot = MarketSnapshot(ts_us=window.last_close_time_us, candles={
        ("XRP/BTC", "5m"): window, ("XRP/USDT", "5m"): xrp_usdt, ("BTC/USDT", "5m"): btc_usdt})
    signal = strategy.generate(snapshot, strategy.config, strategy.new_state("XRP/BTC"))
    assert signal is not None and signal.indicators["implied_ratio"] == pytest.approx(1e-5)


@pytest.mark.parametrize("name", ["trend_momentum", "volatility_breakout", "ema9_trend_flip", "mean_reversion",
                                  "grid_rsi", "momentum_scalp", "ratio_trading", "wavetrend", "whale_sentiment"])
def test_no_signal_without_candles_or_with_too_few(catalog: StrategyCatalog, name: str) -> None:
    strategy = catalog.get(name)
    symbol = strategy.symbols[0]
    timeframe = strategy.config.timeframe
    assert strategy.generate(MarketSnapshot(ts_us=T0), strategy.config, strategy.new_state(symbol)) is None
    short = constructed(np.r_[np.full(8, 100.0), 110.0], timeframe, symbol)
    snapshot = MarketSnapshot(ts_us=short.last_close_time_us, candles={(symbol, timeframe): short})
    assert strategy.generate(snapshot, strategy.config, strategy.new_state(symbol)) is None
