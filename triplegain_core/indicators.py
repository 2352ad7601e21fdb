"""Technical indicators over OHLCV candles, computed with TA-Lib.

One computation (:func:`_compute`) feeds both the whole-history frame used by analysis and
the latest-values dict the hot path needs, so the two can never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import talib

from triplegain_core.market import Candle

INDICATOR_NAMES: tuple[str, ...] = (
    "ema_9",
    "ema_21",
    "ema_50",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "atr_14",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "adx_14",
)

# TA-Lib's largest lookback among the indicators above is EMA50's 49 bars (ADX14: 27,
# MACD 12/26/9: 33), so 50 candles define every value; the margin lets the EMA seed and
# Wilder smoothing settle a little before a signal relies on them.
MIN_HISTORY: int = 60


def _compute(
    high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> dict[str, np.ndarray]:
    """Every indicator of INDICATOR_NAMES as a float64 array aligned with the inputs."""
    macd, macd_signal, macd_hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    bb_upper, bb_middle, bb_lower = talib.BBANDS(close, timeperiod=20, nbdevup=2, nbdevdn=2)
    return {
        "ema_9": talib.EMA(close, timeperiod=9),
        "ema_21": talib.EMA(close, timeperiod=21),
        "ema_50": talib.EMA(close, timeperiod=50),
        "rsi_14": talib.RSI(close, timeperiod=14),
        "macd": macd,
        "macd_signal": macd_signal,
        "macd_hist": macd_hist,
        "atr_14": talib.ATR(high, low, close, timeperiod=14),
        "bb_upper": bb_upper,
        "bb_middle": bb_middle,
        "bb_lower": bb_lower,
        "adx_14": talib.ADX(high, low, close, timeperiod=14),
    }


def indicator_frame(candles: pd.DataFrame) -> pd.DataFrame:
    """One float column per INDICATOR_NAMES for an OHLCV frame, on the frame's own index.

    ``candles`` needs float columns ``high``, ``low`` and ``close`` (``open`` and ``volume``
    may be present and are not used). Values are NaN during each indicator's warm-up.
    """
    arrays = _compute(
        candles["high"].to_numpy(dtype=np.float64),
        candles["low"].to_numpy(dtype=np.float64),
        candles["close"].to_numpy(dtype=np.float64),
    )
    return pd.DataFrame(arrays, index=candles.index, columns=list(INDICATOR_NAMES))


def latest_indicators(candles: Sequence[Candle]) -> dict[str, float] | None:
    """Indicator values at the last candle, or None with too little history or any NaN."""
    if len(candles) < MIN_HISTORY:
        return None
    high = np.fromiter((c.high for c in candles), dtype=np.float64, count=len(candles))
    low = np.fromiter((c.low for c in candles), dtype=np.float64, count=len(candles))
    close = np.fromiter((c.close for c in candles), dtype=np.float64, count=len(candles))
    latest = {name: float(values[-1]) for name, values in _compute(high, low, close).items()}
    if any(math.isnan(value) for value in latest.values()):
        return None
    return latest
