"""The market regime of one symbol from its stored 1-minute candles, and its markdown view.

The candles are resampled to the timeframe the regime is read on (``5m`` by default: the
1-minute tape is mostly noise for a regime), the full indicator set is computed over them and
:class:`~triplegain_core.analysis.regime.RegimeDetector` scores the last closed candle. No database, no
Dagster: the caller reads the candles and stores the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import pandas as pd
from pydantic import BaseModel, ConfigDict

from triplegain_core.analysis.indicators import feature_frame
from triplegain_core.analysis.regime import RegimeDetector, RegimeResult
from triplegain_core.marketdata.timeframes import resample_candles
from triplegain_core.reporting.reports import markdown_table

DEFAULT_REGIME_TIMEFRAME = "5m"
OHLCV: tuple[str, ...] = ("open", "high", "low", "close", "volume")


class SymbolRegime(BaseModel):
    """The regime of one symbol on one timeframe, read at the candle opening at ``time``."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    timeframe: str
    time: datetime
    close: float
    result: RegimeResult


def detect_symbol_regime(
    symbol: str,
    candles_1m: pd.DataFrame,
    timeframe: str = DEFAULT_REGIME_TIMEFRAME,
    detector: RegimeDetector | None = None,
    volatility_lookback: int = 500,
) -> SymbolRegime:
    """The regime at the last closed ``timeframe`` candle built from ``candles_1m``.

    ``candles_1m`` has ``open_time`` (UTC) and the OHLCV columns, ordered by open time.
    ValueError while the indicators the detector needs are still warming up.
    """
    bars = candles_1m[["open_time", *OHLCV]].reset_index(drop=True)
    if timeframe != "1m":
        bars = resample_candles(bars, timeframe)
    if bars.empty:
        raise ValueError(f"no closed {timeframe} candle for {symbol}")
    frame = pd.concat([bars, feature_frame(bars)], axis=1)
    result = (detector or RegimeDetector()).detect_frame(
        frame, volatility_lookback=volatility_lookback
    )
    last = frame.iloc[-1]
    return SymbolRegime(symbol=symbol, timeframe=timeframe,
                        time=pd.Timestamp(last["open_time"]).to_pydatetime(),
                        close=float(last["close"]), result=result)


def regimes_markdown(regimes: Sequence[SymbolRegime], warming_up: Mapping[str, str]) -> str:
    """One row per symbol: regime, score, volatility, then each component's score.

    ``warming_up`` maps the symbols without a regime yet to the reason, shown as their row.
    """
    names = sorted({c.name for r in regimes for c in r.result.components})
    rows: list[list[object]] = []
    for item in regimes:
        result = item.result
        percentile = ("n/a" if result.volatility_percentile is None
                      else f"{100 * result.volatility_percentile:.0f}%")
        scores = {c.name: f"{c.score:+.2f}" for c in result.components}
        rows.append([item.symbol, item.timeframe, f"{item.time:%Y-%m-%d %H:%M}",
                     f"**{result.regime.value}**", f"{result.score:+.3f}",
                     result.volatility.value, percentile, f"{result.natr:.3f}",
                     *(scores.get(name, "n/a") for name in names)])
    for symbol, reason in warming_up.items():
        rows.append([symbol, "", reason, "warming up", "", "", "", "", *("" for _ in names)])
    return markdown_table(
        ["symbol", "timeframe", "candle (UTC)", "regime", "score", "volatility",
         "ATR% percentile", "ATR%", *names],
        rows,
    )
