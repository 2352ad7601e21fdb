"""The machine-learning dataset of one symbol and timeframe: what was known at each candle's
close (every indicator, the regime, the patterns) beside what came after (forward returns).

Each row is one closed candle. Its features are computed from that candle and the ones before
it only: the indicators are causal (TA-Lib's, seeded at the first candle), the regime is judged
on the row's own indicator values with the NATR of the rows before it, the squeeze on the widths
up to the row. Its labels are the forward returns ``close[t + h] / close[t] - 1`` for each horizon
``h`` (in candles of the timeframe; NaN where the history ends first). Changing a candle can
therefore change no earlier row's features, and no label whose horizon ends before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from triplegain_core.analysis.indicators import feature_frame, values_at
from triplegain_core.analysis.patterns import ema_stack, squeeze_series
from triplegain_core.analysis.regime import RegimeDetector
from triplegain_core.marketdata.timeframes import resample_candles

# Forward-return horizons, in candles of the dataset's timeframe.
DEFAULT_HORIZONS = (1, 5, 15)
# The earlier NATR values the regime's volatility percentile is judged against.
VOLATILITY_LOOKBACK = 500


def ml_dataset(candles: pd.DataFrame, timeframe: str, horizons: Sequence[int] = DEFAULT_HORIZONS) -> pd.DataFrame:
    """One symbol's dataset on ``timeframe`` from its 1m ``candles`` (``open_time``, OHLCV,
    ordered): the candle, every indicator (``FEATURE_NAMES``), ``regime``, ``regime_score``, ``volatility``,
    ``ema_stack``, ``squeeze``, then ``fwd_return_<h>`` per horizon."""
    if any(h < 1 for h in horizons):
        raise ValueError(f"horizons are whole candles ahead, 1 or more; got {list(horizons)}")
    bars = candles.reset_index(drop=True) if timeframe == "1m" else resample_candles(candles, timeframe)
    bars = bars[["open_time", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
    features = feature_frame(bars)
    frame = pd.concat([bars, features], axis=1)
    for column, values in zip(("regime", "regime_score", "volatility", "ema_stack"), _judged(frame), strict=True):
        frame[column] = values
    frame["squeeze"] = squeeze_series(frame).to_numpy()
    close = frame["close"].to_numpy(dtype=float)
    for horizon in horizons:
        ahead = np.full(len(close), np.nan)
        ahead[:-horizon] = close[horizon:] / close[:-horizon] - 1.0
        frame[f"fwd_return_{horizon}"] = ahead
    return frame


def _judged(frame: pd.DataFrame) -> tuple[list[str | None], list[float], list[str | None], list[str]]:
    """Per row: the regime and its score and volatility state (None while warming up), the EMA stack."""
    detector = RegimeDetector()
    natr = frame["natr_14"].to_numpy(dtype=float)
    closes = frame["close"].to_numpy(dtype=float)
    regimes: list[str | None] = []
    scores: list[float] = []
    volatility: list[str | None] = []
    stacks: list[str] = []
    for row in range(len(frame)):
        values = values_at(frame, row)
        stacks.append(ema_stack(values).value)
        try:
            result = detector.detect(values, float(closes[row]),
                                     volatility_history=natr[max(0, row - VOLATILITY_LOOKBACK):row])
        except ValueError:  # indicators still warming up
            regimes.append(None)
            scores.append(float("nan"))
            volatility.append(None)
            continue
        regimes.append(result.regime.value)
        scores.append(result.score)
        volatility.append(result.volatility.value)
    return regimes, scores, volatility, stacks


def write_ml_dataset(frame: pd.DataFrame, folder: Path, symbol: str, timeframe: str) -> Path:
    """Write a dataset as ``<folder>/<BASE>-<QUOTE>_<timeframe>.parquet``; the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{symbol.replace('/', '-')}_{timeframe}.parquet"
    frame.to_parquet(path, index=False)
    return path
