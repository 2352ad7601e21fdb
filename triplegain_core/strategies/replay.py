"""Replay a candle strategy over a history, seeing at each candle only what the loop would see.

At each closed candle t the strategy gets a snapshot holding the last ``window`` candles up to
and including t, timed at t's close, with the same :class:`StrategyState` carried across the
replay (as the runner would). Used by backtests and by the tests' look-ahead checks.
"""

from __future__ import annotations

from triplegain_core.marketdata.snapshot import CandleWindow, MarketSnapshot
from triplegain_core.model.market import timeframe_us
from triplegain_core.model.signals import Signal
from triplegain_core.strategies.registry import LoadedStrategy


def replay_candles(
    strategy: LoadedStrategy, history: CandleWindow, window: int = 300
) -> list[tuple[int, Signal]]:
    """(index of the candle it fired on, signal) for every signal over ``history``.

    Emitted signals are recorded in the state, so strategies that CLOSE their own intents
    behave as they would live.
    """
    if window < 1:
        raise ValueError(f"window must be positive, got {window}")
    state = strategy.new_state(history.symbol)
    span = timeframe_us(history.timeframe)
    signals: list[tuple[int, Signal]] = []
    for end in range(1, len(history) + 1):
        start = max(0, end - window)
        cut = CandleWindow(
            history.symbol,
            history.timeframe,
            history.open_time_us[start:end],
            history.open[start:end],
            history.high[start:end],
            history.low[start:end],
            history.close[start:end],
            history.volume[start:end],
        )
        snapshot = MarketSnapshot(
            ts_us=int(history.open_time_us[end - 1]) + span,
            candles={(history.symbol, history.timeframe): cut},
        )
        signal = strategy.generate(snapshot, strategy.config, state)
        if signal is not None:
            state.record(signal)
            signals.append((end - 1, signal))
    return signals
