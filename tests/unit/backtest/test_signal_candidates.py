"""A strategy that names the rows where it may signal (``SIGNAL_CANDIDATES``) is called only
there by a backtest, and trades exactly as when it is called on every candle."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from tests.support.ema_cross import ema_cross
from triplegain_core.backtest import engine
from triplegain_core.backtest.engine import BacktestResult, run_backtest
from triplegain_core.backtest.history import BacktestHistory, SourceFile, history_from_files
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.marketdata.snapshot import CandleWindow, MarketSnapshot
from triplegain_core.model.signals import Signal
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.registry import LoadedStrategy

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
