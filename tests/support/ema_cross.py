"""The EMA 9/21 cross of the backtest benchmark: LONG when the EMA 9 of the last 60 closes
crosses above the EMA 21, SHORT below; stop 1 %, take-profit 2 %. It names the rows where it may
signal (``SIGNAL_CANDIDATES``), so a backtest calls it only there."""

from __future__ import annotations

import numpy as np
import talib
from pydantic import BaseModel

from triplegain_core.marketdata.snapshot import CandleWindow, MarketSnapshot
from triplegain_core.model.market import us_to_datetime
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.candidates import rows_after_lookback, windowed_ema, windows_through
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.registry import LoadedStrategy


class EmaCrossConfig(BaseModel):
    """EMA periods on 1m candles."""

    timeframe: str = "1m"
    window: int = 60
    fast: int = 9
    slow: int = 21


def _ema_cross(snapshot: MarketSnapshot, config: EmaCrossConfig, state: StrategyState) -> Signal | None:
    window = snapshot.window(state.symbol, "1m")
    if window is None or len(window) < config.slow + 2:
        return None
    close = window.close[-config.window:]
    fast, slow = talib.EMA(close, config.fast), talib.EMA(close, config.slow)
    above_now, above_before = fast[-1] > slow[-1], fast[-2] > slow[-2]
    if above_now == above_before:
        return None
    action = SignalAction.LONG if above_now else SignalAction.SHORT
    price, long = float(close[-1]), above_now
    return Signal(signal_id=f"ema:{state.symbol}:{int(window.open_time_us[-1])}", strategy="ema_cross",
                  strategy_version="1", symbol=state.symbol, timeframe="1m", time=us_to_datetime(snapshot.ts_us),
                  action=action, strength=0.6, entry=price, stop_loss=price * (0.99 if long else 1.01),
                  take_profit=price * (1.02 if long else 0.98), reason="ema 9/21 cross")


def _ema_cross_candidates(candles: CandleWindow, first: int, config: EmaCrossConfig) -> np.ndarray:
    """The rows where the EMA cross may signal: where the EMAs of the last ``window`` closes
    cross, or come within a billionth of each other (TA-Lib may round otherwise); every row
    with a shorter history."""
    def rule(start: int) -> np.ndarray:
        windows = windows_through(candles.close, config.window, start)
        fast_ema, slow_ema = windowed_ema(windows, config.fast), windowed_ema(windows, config.slow)
        fast_before, fast, slow_before, slow = fast_ema[:, -2], fast_ema[:, -1], slow_ema[:, -2], slow_ema[:, -1]
        near = 1e-9 * np.abs(slow)
        return (((fast > slow) != (fast_before > slow_before)) | (np.abs(fast - slow) <= near)
                | (np.abs(fast_before - slow_before) <= near))

    # A whole window of closes ends at the row: window - 1 candles before it.
    return rows_after_lookback(candles, first, config.window - 1, rule)


def ema_cross(symbols: tuple[str, ...], *, candidates: bool = True) -> LoadedStrategy:
    """The EMA cross on ``symbols``; with ``candidates``, it names the rows where it may signal."""
    return LoadedStrategy(name="ema_cross", version="1", symbols=symbols, config=EmaCrossConfig(),
                          generate=_ema_cross, source="tests", reads=frozenset({"candles"}),
                          candidates=_ema_cross_candidates if candidates else None)
