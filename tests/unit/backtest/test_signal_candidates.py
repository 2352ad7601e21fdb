"""A strategy that names the rows where it may signal (``SIGNAL_CANDIDATES``), and the
TechnicalAgent (its candidate rows), are called only there by a backtest, and trade exactly as
when they are called on every candle."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.ema_cross import ema_cross
from triplegain_core.analysis.technical_agent import TechnicalAgent
from triplegain_core.backtest import engine
from triplegain_core.backtest.engine import BacktestResult, run_backtest
from triplegain_core.backtest.history import BacktestHistory, SourceFile, history_from_candles, history_from_files
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.marketdata.snapshot import CandleWindow, MarketSnapshot
from triplegain_core.model.market import TIMEFRAME_US, US_PER_MINUTE, Candle
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.registry import LoadedStrategy
from triplegain_core.strategies.selection import select_strategies

SETTINGS = Settings(symbols=("XRP/USDT",), strategies=StrategySettings(enabled=(), technical_agent=False))


@pytest.fixture(scope="module")
def history(shared_data: Path) -> BacktestHistory:
    return history_from_files([SourceFile(path=str(shared_data / "binance_xrp-eth_1m.parquet"), symbol="XRP/USDT")])


def _counted(strategy: LoadedStrategy) -> tuple[LoadedStrategy, list[int]]:
    """``strategy`` with its calls counted."""
    calls: list[int] = []

    def generate(snapshot: MarketSnapshot, config: object, state: StrategyState) -> Signal | None:
        calls.append(snapshot.ts_us)
        return strategy.generate(snapshot, config, state)  # type: ignore[arg-type]

    return dataclasses.replace(strategy, generate=generate), calls


def _same_trail(first: BacktestResult, second: BacktestResult) -> None:
    assert first.trades_hash == second.trades_hash
    for ours, theirs in zip(first.accounts, second.accounts, strict=True):
        assert ours.trail.signals == theirs.trail.signals
        assert bytes(ours.trail.curve.equity) == bytes(theirs.trail.curve.equity)
        assert bytes(ours.trail.curve.times_us) == bytes(theirs.trail.curve.times_us)


@pytest.mark.parametrize("batch", [engine.BATCH_CANDLES, 97])
def test_called_only_where_it_may_signal_it_trades_as_when_called_on_every_candle(
        history: BacktestHistory, batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "BATCH_CANDLES", batch)
    everywhere, every_call = _counted(ema_cross(("XRP/USDT",), candidates=False))
    asked, asked_calls = _counted(ema_cross(("XRP/USDT",)))
    full = run_backtest(SETTINGS, history, strategies=[everywhere])
    fast = run_backtest(SETTINGS, history, strategies=[asked])
    _same_trail(full, fast)
    assert len(full.account("paper:ema_cross").trail.fills) > 10  # it traded: the comparison means something
    assert len(asked_calls) < len(every_call) / 3
    assert set(asked_calls) <= set(every_call)


def test_a_candidates_function_that_hides_a_signal_changes_the_trades(history: BacktestHistory) -> None:
    """The comparison above can fail: rows hidden from the strategy are rows it does not trade on."""
    def never(candles: CandleWindow, first: int, config: object) -> np.ndarray:
        return np.zeros(len(candles) - first, dtype=bool)

    blind = dataclasses.replace(ema_cross(("XRP/USDT",)), candidates=never)
    result = run_backtest(SETTINGS, history, strategies=[blind])
    assert result.account("paper:ema_cross").trail.signals == 0
    assert run_backtest(SETTINGS, history, strategies=[ema_cross(("XRP/USDT",))]).account(
        "paper:ema_cross").trail.signals > 0


@pytest.mark.parametrize("broken", ["raises", "wrong length", "not bool"])
def test_a_broken_candidates_function_is_logged_and_the_strategy_asked_on_every_candle(
        history: BacktestHistory, broken: str, caplog: pytest.LogCaptureFixture) -> None:
    def candidates(candles: CandleWindow, first: int, config: object) -> np.ndarray:
        if broken == "raises":
            raise ZeroDivisionError("division by zero")
        if broken == "wrong length":
            return np.zeros(3, dtype=bool)
        return np.zeros(len(candles) - first)

    strategy = dataclasses.replace(ema_cross(("XRP/USDT",)), candidates=candidates)
    with caplog.at_level(logging.ERROR):
        result = run_backtest(SETTINGS, history, strategies=[strategy])
    _same_trail(result, run_backtest(SETTINGS, history, strategies=[ema_cross(("XRP/USDT",), candidates=False)]))
    assert "SIGNAL_CANDIDATES of ema_cross failed on XRP/USDT" in caplog.text


def _relabelled(frame: pd.DataFrame, symbol: str, scale: float, start_us: int) -> list[Candle]:
    """Real candles of another market as ``symbol``'s 1m candles from ``start_us`` (gaps kept)."""
    first = frame["ts"].iloc[0]
    minutes = ((frame["ts"] - first).dt.total_seconds() // 60).astype(int)
    step = int(minutes.diff().dropna().min()) or 1  # a 5m file's rows become consecutive minutes
    return [Candle(symbol, "1m", start_us + (m // step) * US_PER_MINUTE, o * scale, h * scale, lo * scale, c * scale,
                   float(v), 1)
            for m, o, h, lo, c, v in zip(minutes, frame["open"], frame["high"], frame["low"], frame["close"],
                                         frame["volume"], strict=True)]


@pytest.fixture(scope="module")
def three_markets(shared_data: Path) -> BacktestHistory:
    """Three real markets (one with gaps) as the three pairs, 2,500 minutes each."""
    start_us = 1_767_225_600 * 1_000_000
    sources = {"BTC/USDT": ("binance_eth-btc_5m.parquet", 60_000.0 / 0.1),
               "XRP/USDT": ("binance_xrp-usdt-perp_5m.parquet", 0.5),
               "XRP/BTC": ("binance_alt-btc_1m.parquet", 1.0)}
    candles: list[Candle] = []
    for symbol, (name, scale) in sources.items():
        candles += [c for c in _relabelled(pd.read_parquet(shared_data / name), symbol, scale, start_us)
                    if c.open_time_us < start_us + 2_500 * US_PER_MINUTE]
    return history_from_candles(candles)


def test_every_strategy_and_the_technical_agent_asked_where_they_may_signal_trade_as_when_called_everywhere(
        three_markets: BacktestHistory, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(symbols=("BTC/USDT", "XRP/USDT", "XRP/BTC"))
    strategies = select_strategies(settings.strategies, settings.symbols).strategies
    assert any(s.candidates is not None for s in strategies)
    asked = run_backtest(settings, three_markets)

    def everywhere(self: TechnicalAgent, candles: CandleWindow, first: int, window: int) -> np.ndarray:
        return np.ones(len(candles) - first, dtype=bool)

    monkeypatch.setattr(TechnicalAgent, "candidate_rows", everywhere)
    called = run_backtest(settings, three_markets,
                          strategies=[dataclasses.replace(s, candidates=None) for s in strategies])
    _same_trail(asked, called)
    traded = {a.name for a in asked.accounts if a.trail.fills}
    assert {"paper", "paper:momentum_scalp"} <= traded and len(traded) >= 6


COLUMNS = ("open_time_us", "open", "high", "low", "close", "volume")


def _series(path: Path, symbol: str, timeframe: str, rows: int) -> CandleWindow:
    """The first ``rows`` candles of a real file as ``symbol``'s ``timeframe`` series."""
    frame = pd.read_parquet(path).iloc[:rows]
    opens = frame["ts"].astype("int64").to_numpy() // 1_000
    return CandleWindow.from_arrays(symbol, timeframe, opens, frame["open"], frame["high"], frame["low"],
                                    frame["close"], frame["volume"])


@pytest.mark.parametrize("source", ["binance_xrp-usdt-perp_5m.parquet", "binance_alt-btc_1m.parquet"])
def test_every_built_in_candidates_function_marks_each_row_its_strategy_signals_on(
        shared_data: Path, source: str) -> None:
    """Row by row on real candles, flat, long and short: every signal falls on a marked row."""
    settings = Settings(symbols=("XRP/USDT",))
    strategies = [s for s in select_strategies(settings.strategies, settings.symbols).strategies
                  if s.candidates is not None]
    assert {"grid_rsi", "momentum_scalp", "trend_momentum", "volatility_breakout", "wavetrend",
            "whale_sentiment"} <= {s.name for s in strategies}
    first = 40
    for strategy in strategies:
        timeframe = strategy.config.timeframe  # type: ignore[attr-defined]
        series = _series(shared_data / source, "XRP/USDT", timeframe, 1_500)
        rows = strategy.candidates(series, first, strategy.config)  # type: ignore[misc]
        assert rows.dtype == np.bool_ and rows.shape == (len(series) - first,)
        signalled = 0
        for row in range(first, len(series)):
            window = CandleWindow("XRP/USDT", timeframe, *(getattr(series, name)[:row + 1] for name in COLUMNS))
            snapshot = MarketSnapshot(ts_us=int(window.open_time_us[-1]) + TIMEFRAME_US[timeframe],
                                      candles={("XRP/USDT", timeframe): window})
            for held in (None, SignalAction.LONG, SignalAction.SHORT):
                state = StrategyState(symbol="XRP/USDT", open_action=held,
                                      open_entry=None if held is None else float(window.close[-1]))
                if strategy.generate(snapshot, strategy.config, state) is not None:
                    signalled += 1
                    assert rows[row - first], f"{strategy.name} signalled on unmarked row {row} ({held})"
        assert signalled, f"{strategy.name} never signalled: the check would prove nothing"
