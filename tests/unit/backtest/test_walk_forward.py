"""Walk-forward: parameters chosen on each train window only, judged on the test window after it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pydantic import BaseModel

from triplegain_core.backtest.history import history_from_candles
from triplegain_core.backtest.walk_forward import parameter_sets, walk_forward, walk_forward_windows
from triplegain_core.config import Settings
from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.model.market import US_PER_MINUTE, Candle, us_to_datetime
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.registry import LoadedStrategy

T0 = 1_780_000_000 * 1_000_000 // US_PER_MINUTE * US_PER_MINUTE
SETTINGS = Settings(symbols=("XRP/USDT",))


class _Side(BaseModel):
    side: str = "long"


def _one_side(snapshot: MarketSnapshot, config: _Side, state: StrategyState) -> Signal | None:
    """Enters its configured side whenever flat, with a 1 % stop and a 1 % target."""
    window = snapshot.window(state.symbol, "1m")
    if window is None or state.open_action is not None:
        return None
    close, key_us = float(window.close[-1]), int(window.open_time_us[-1])
    long = config.side == "long"
    return Signal(signal_id=f"side:{key_us}", strategy="side", strategy_version="1", symbol=state.symbol,
                  timeframe="1m", time=us_to_datetime(snapshot.ts_us),
                  action=SignalAction.LONG if long else SignalAction.SHORT, strength=0.9, entry=close,
                  stop_loss=close * (0.99 if long else 1.01), take_profit=close * (1.01 if long else 0.99),
                  reason=config.side)


SIDE = LoadedStrategy(name="side", version="1", symbols=("XRP/USDT",), config=_Side(), generate=_one_side,
                      source="test", reads=frozenset({"candles"}))


def _trend(minutes: int, drift: float, start: float, seed: int, offset: int) -> list[Candle]:
    steps = np.random.default_rng(seed).normal(drift, 0.0004, minutes)
    closes = start * np.exp(np.cumsum(steps))
    return [Candle("XRP/USDT", "1m", T0 + (offset + i) * US_PER_MINUTE, c, c * 1.0003, c * 0.9997, c, 1000.0, 5)
            for i, c in enumerate(closes)]


def _up_then_down() -> list[Candle]:
    up = _trend(240, 0.0004, 0.5, 1, 0)
    return up + _trend(120, -0.0004, up[-1].close, 2, 240)


def test_windows_roll_or_grow_and_never_reach_past_the_history() -> None:
    rolling = walk_forward_windows(T0, T0 + 100 * US_PER_MINUTE, 40, 20, anchored=False)
    assert [(w.train_start_us - T0, w.test_start_us - T0, w.test_end_us - T0) for w in rolling] == [
        (0, 40 * US_PER_MINUTE, 60 * US_PER_MINUTE), (20 * US_PER_MINUTE, 60 * US_PER_MINUTE, 80 * US_PER_MINUTE),
        (40 * US_PER_MINUTE, 80 * US_PER_MINUTE, 100 * US_PER_MINUTE)]
    anchored = walk_forward_windows(T0, T0 + 100 * US_PER_MINUTE, 40, 20, anchored=True)
    assert {w.train_start_us for w in anchored} == {T0}
    assert [w.test_start_us for w in anchored] == [w.test_start_us for w in rolling]
    with pytest.raises(ValueError, match="shorter than one train window and one test window"):
        walk_forward_windows(T0, T0 + 50 * US_PER_MINUTE, 40, 20, anchored=False)


def test_a_grid_is_every_combination_in_order() -> None:
    assert parameter_sets({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]


def test_the_side_that_won_the_train_window_is_judged_on_the_test_window_and_the_gap_shows() -> None:
    history = history_from_candles(_up_then_down())
    windows = walk_forward_windows(history.start_us, history.end_us, 240, 120, anchored=False)
    assert len(windows) == 1
    result = walk_forward(SETTINGS, history, {"side": [{"side": "long"}, {"side": "short"}]}, windows,
                          strategies=[SIDE])
    (walk,) = result.strategies
    (outcome,) = walk.windows
    assert outcome.parameters == {"side": "long"}  # the uptrend of the train window chose long
    assert outcome.train_return_pct > 0 > outcome.test_return_pct  # and the downtrend after punished it
    assert walk.gap_pct == pytest.approx(outcome.train_return_pct - outcome.test_return_pct) and walk.gap_pct > 0
    assert walk.stitched_return_pct == pytest.approx(outcome.test_return_pct)
    assert list(walk.stitched_times_us) == sorted(walk.stitched_times_us)
    assert walk.stitched_times_us[0] > windows[0].test_start_us  # out of sample only


def test_a_choice_never_sees_its_test_window() -> None:
    candles = _up_then_down()
    windows = walk_forward_windows(candles[0].open_time_us, candles[-1].close_time_us, 240, 60, anchored=True)
    grid = {"side": [{"side": "long"}, {"side": "short"}]}
    before = walk_forward(SETTINGS, history_from_candles(candles), grid, windows, strategies=[SIDE])
    # The future changes beyond the first train window: the first choice and its train return do not.
    changed = candles[:240] + [dataclasses.replace(c, close=c.close * 1.05, high=c.high * 1.05, open=c.open * 1.05,
                                                   low=c.low * 1.05) for c in candles[240:]]
    after = walk_forward(SETTINGS, history_from_candles(changed), grid, windows, strategies=[SIDE])
    first_before, first_after = before.strategies[0].windows[0], after.strategies[0].windows[0]
    assert first_before.parameters == first_after.parameters
    assert first_before.train_return_pct == first_after.train_return_pct
    assert first_before.test_return_pct != first_after.test_return_pct
    assert len(before.strategies[0].windows) == 2 and len({w.train_start_us for w in before.windows}) == 1


def test_an_unknown_strategy_is_named() -> None:
    history = history_from_candles(_up_then_down())
    windows = walk_forward_windows(history.start_us, history.end_us, 240, 120, anchored=False)
    with pytest.raises(ValueError, match="no strategy nonesuch to walk forward"):
        walk_forward(SETTINGS, history, {"nonesuch": []}, windows, strategies=[SIDE])
