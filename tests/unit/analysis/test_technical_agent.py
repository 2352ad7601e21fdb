"""The TechnicalAgent on real candles: both directions, valid levels, deterministic ids."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from triplegain_core.analysis.indicators import MIN_HISTORY, latest_indicators
from triplegain_core.analysis.technical_agent import STRATEGY, TechnicalAgent, TechnicalAgentConfig
from triplegain_core.model import market
from triplegain_core.model.market import Candle, datetime_to_us, us_to_datetime
from triplegain_core.model.signals import Direction, Signal

WINDOW = 300  # the executor keeps this much history per symbol


@pytest.fixture(autouse=True)
def five_minute_timeframe(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real data files are 5m candles; market.TIMEFRAME_US only knows the live "1m".
    monkeypatch.setitem(market.TIMEFRAME_US, "5m", 5 * market.US_PER_MINUTE)


def _load(folder: Path, name: str, symbol: str) -> list[Candle]:
    frame = pd.read_parquet(folder / name)
    return [
        Candle(symbol, "5m", datetime_to_us(r.ts.to_pydatetime()), r.open, r.high, r.low, r.close, r.volume, 0)
        for r in frame.itertuples()
    ]


@pytest.fixture(scope="module", params=[
    ("binance_xrp-usdt-perp_5m.parquet", "XRP/USDT"),
    ("binance_eth-btc_5m.parquet", "XRP/BTC"),  # ETH/BTC prices standing in for a BTC-quoted pair
])
def candles(request: pytest.FixtureRequest, shared_data: Path) -> list[Candle]:
    name, symbol = request.param
    return _load(shared_data, name, symbol)


def _replay(agent: TechnicalAgent, candles: list[Candle]) -> list[tuple[int, Signal]]:
    signals = []
    for end in range(1, len(candles) + 1):
        signal = agent.analyze(candles[0].symbol, candles[max(0, end - WINDOW) : end])
        if signal is not None:
            signals.append((end, signal))
    return signals


def test_emits_valid_long_and_short_signals(candles: list[Candle]) -> None:
    config = TechnicalAgentConfig()
    signals = _replay(TechnicalAgent(config), candles)
    directions = {signal.direction for _, signal in signals}
    assert directions == {Direction.LONG, Direction.SHORT}
    for end, signal in signals:
        last = candles[end - 1]
        assert end >= MIN_HISTORY
        assert signal.strategy == STRATEGY
        assert signal.signal_id == f"{STRATEGY}:{last.symbol}:5m:{last.open_time_us}"
        assert signal.time == us_to_datetime(last.open_time_us + 5 * market.US_PER_MINUTE)
        assert signal.entry == last.close
        assert signal.strength >= config.min_strength
        stop_distance = abs(signal.entry - signal.stop_loss)
        assert stop_distance <= config.max_stop_distance * signal.entry * (1 + 1e-12)
        assert abs(signal.take_profit - signal.entry) == pytest.approx(config.reward_risk * stop_distance)
        v = signal.indicators
        assert v == latest_indicators(candles[max(0, end - WINDOW) : end])
        if signal.direction is Direction.LONG:
            assert v["ema_9"] > v["ema_21"] > v["ema_50"] and v["macd_hist"] > 0 and v["rsi_14"] < 70
        else:
            assert v["ema_9"] < v["ema_21"] < v["ema_50"] and v["macd_hist"] < 0 and v["rsi_14"] > 30


def test_no_signal_with_insufficient_history(candles: list[Candle]) -> None:
    agent = TechnicalAgent(TechnicalAgentConfig(min_strength=0.0))
    for end in range(MIN_HISTORY):
        assert agent.analyze(candles[0].symbol, candles[:end]) is None


def test_replay_yields_the_same_signals(candles: list[Candle]) -> None:
    first = _replay(TechnicalAgent(), candles)
    second = _replay(TechnicalAgent(), candles)
    assert first == second
    ids = [signal.signal_id for _, signal in first]
    assert len(ids) == len(set(ids))


def test_min_strength_filters(candles: list[Candle]) -> None:
    loose = _replay(TechnicalAgent(TechnicalAgentConfig(min_strength=0.0)), candles)
    strict = _replay(TechnicalAgent(TechnicalAgentConfig(min_strength=0.8)), candles)
    assert len(strict) < len(loose)
    assert all(signal.strength >= 0.8 for _, signal in strict)


def test_stop_clamped_to_max_distance(candles: list[Candle]) -> None:
    config = TechnicalAgentConfig(stop_atr_multiple=50.0, max_stop_distance=0.005)
    signals = _replay(TechnicalAgent(config), candles)
    assert signals
    for _, signal in signals:
        assert abs(signal.entry - signal.stop_loss) == pytest.approx(0.005 * signal.entry)


def test_rejects_candles_of_another_symbol(candles: list[Candle]) -> None:
    with pytest.raises(ValueError):
        TechnicalAgent().analyze("BTC/USDT", candles[:WINDOW])


def test_window_analysis_is_the_candle_analysis(candles: list[Candle]) -> None:
    # The loop's hot path reads a ring's window; it must decide exactly as the candle path,
    # on every candle of the replay (short histories, no signal, and both directions).
    from triplegain_core.marketdata.snapshot import CandleBuffer

    agent = TechnicalAgent(TechnicalAgentConfig(min_strength=0.0))
    buffer = CandleBuffer(candles[0].symbol, "5m", capacity=WINDOW + 50)
    signals = 0
    for end, candle in enumerate(candles, start=1):
        buffer.append(candle)
        window = buffer.window()
        assert window is not None
        expected = agent.analyze(candle.symbol, candles[max(0, end - WINDOW) : end])
        assert agent.analyze_window(window.tail(WINDOW)) == expected
        signals += expected is not None
    assert signals > 0
