"""A strategy that cheats on purpose, for the look-ahead and warm-up checks to catch.

A window's columns are views of the history's arrays, so ``window.close.base`` is the whole
history, the future included. This strategy is LONG while the close is below the mean of that
whole array, SHORT while above: it reads closes not printed yet (look-ahead) and as many past ones as it was
given (warm-up).
"""

from __future__ import annotations

from pydantic import BaseModel

from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.model.market import us_to_datetime
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.registry import LoadedStrategy


class PeekConfig(BaseModel):
    """One minute candles, a short window."""

    timeframe: str = "1m"
    window: int = 30


def _peek(snapshot: MarketSnapshot, config: PeekConfig, state: StrategyState) -> Signal | None:
    window = snapshot.window(state.symbol, config.timeframe)
    if window is None:
        return None
    everything = window.close.base if window.close.base is not None else window.close
    close = float(window.close[-1])
    action = SignalAction.LONG if close < float(everything.mean()) else SignalAction.SHORT
    if state.open_action is action:
        return None
    long = action is SignalAction.LONG
    return Signal(signal_id=f"peek:{int(window.open_time_us[-1])}", strategy="peek", strategy_version="1",
                  symbol=state.symbol, timeframe=config.timeframe, time=us_to_datetime(snapshot.ts_us),
                  action=action, strength=0.5, entry=close, stop_loss=close * (0.99 if long else 1.01),
                  take_profit=close * (1.02 if long else 0.98), reason="against the mean of everything")


PEEKING = LoadedStrategy(name="peek", version="1", symbols=("XRP/USDT",), config=PeekConfig(), generate=_peek,
                         source="tests", reads=frozenset({"candles"}))
