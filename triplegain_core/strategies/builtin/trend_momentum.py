"""The TechnicalAgent's trend-following momentum rule as a strategy (built-in #1).

The rule and its strength are the agent's own (:meth:`TechnicalAgent.direction` and
:meth:`TechnicalAgent.strength` of :mod:`triplegain_core.analysis.technical_agent`: EMA9 >
EMA21 > EMA50, positive MACD histogram, RSI below overbought, ADX trending; SHORT mirrored),
applied to the indicator values of a bounded window of the snapshot's arrays, on the
strategy's own timeframe.
"""

from __future__ import annotations

import math

import numpy as np
import talib
from pydantic import ConfigDict, Field

from triplegain_core.analysis.indicators import MIN_HISTORY
from triplegain_core.analysis.technical_agent import TechnicalAgent, TechnicalAgentConfig
from triplegain_core.marketdata.snapshot import CandleWindow, MarketSnapshot
from triplegain_core.model.market import TRADED_SYMBOLS
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.levels import candle_signal

NAME = "trend_momentum"
VERSION = "1.0.0"
SYMBOLS = TRADED_SYMBOLS
READS = frozenset({"candles"})


class Config(TechnicalAgentConfig):
    """The TechnicalAgent's thresholds plus the timeframe and window the strategy reads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeframe: str = "5m"
    window: int = Field(default=300, ge=MIN_HISTORY)


def indicator_values(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> dict[str, float]:
    """The latest values the rule reads, named as in ``indicators.INDICATOR_NAMES``."""
    _, _, macd_hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    return {
        "ema_9": float(talib.EMA(close, timeperiod=9)[-1]),
        "ema_21": float(talib.EMA(close, timeperiod=21)[-1]),
        "ema_50": float(talib.EMA(close, timeperiod=50)[-1]),
        "rsi_14": float(talib.RSI(close, timeperiod=14)[-1]),
        "macd_hist": float(macd_hist[-1]),
        "atr_14": float(talib.ATR(high, low, close, timeperiod=14)[-1]),
        "adx_14": float(talib.ADX(high, low, close, timeperiod=14)[-1]),
    }


def generate_signal(snapshot: MarketSnapshot, config: Config, state: StrategyState) -> Signal | None:
    """LONG/SHORT on the last closed candle when the trend rule holds with enough strength."""
    window = snapshot.window(state.symbol, config.timeframe)
    if window is None or len(window) < MIN_HISTORY:
        return None
    window = window.tail(config.window)
    v = indicator_values(window.high, window.low, window.close)
    if any(math.isnan(value) for value in v.values()):
        return None
    agent = TechnicalAgent(config)
    direction = agent.direction(v)
    if direction is None:
        return None
    action = SignalAction(direction.value)
    return candle_signal(
        strategy=NAME,
        version=VERSION,
        window=window,
        action=action,
        strength=agent.strength(v),
        stop_distance=config.stop_atr_multiple * v["atr_14"],
        config=config,
        reason=f"EMAs stacked {action}, MACD histogram {v['macd_hist']:+.3g}, ADX {v['adx_14']:.1f}",
        indicators=v,
    )


def signal_candidates(candles: CandleWindow, first: int, config: Config) -> np.ndarray:
    """The rows from ``first`` on where :func:`generate_signal` may signal: the TechnicalAgent's
    own (the same rule on the same indicators, over ``config.window`` candles)."""
    return TechnicalAgent(config).candidate_rows(candles, first, config.window)


SIGNAL_CANDIDATES = signal_candidates
