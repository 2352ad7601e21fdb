"""Indicators equal TA-Lib called directly, on real candles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from triplegain_core.indicators import INDICATOR_NAMES, MIN_HISTORY, indicator_frame, latest_indicators
from triplegain_core.market import Candle, datetime_to_us

REQUIRED = {
    "ema_9", "ema_21", "ema_50", "rsi_14", "macd", "macd_signal", "macd_hist",
    "atr_14", "bb_upper", "bb_middle", "bb_lower", "adx_14",
}


@pytest.fixture(scope="module")
def xrp_frame(shared_data: Path) -> pd.DataFrame:
    return pd.read_parquet(shared_data / "binance_xrp-usdt-perp_5m.parquet")


def _candles(frame: pd.DataFrame) -> list[Candle]:
    return [
        Candle("XRP/USDT", "1m", datetime_to_us(r.ts.to_pydatetime()), r.open, r.high, r.low, r.close, r.volume, 0)
        for r in frame.itertuples()
    ]


def test_names_cover_the_required_indicators() -> None:
    assert REQUIRED <= set(INDICATOR_NAMES)


def test_each_column_equals_talib_directly(xrp_frame: pd.DataFrame) -> None:
    result = indicator_frame(xrp_frame)
    assert list(result.columns) == list(INDICATOR_NAMES)
    assert result.index.equals(xrp_frame.index)
    assert all(dtype == np.float64 for dtype in result.dtypes)
    high, low, close = (xrp_frame[c].to_numpy() for c in ("high", "low", "close"))
    macd, macd_signal, macd_hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    bb_upper, bb_middle, bb_lower = talib.BBANDS(close, timeperiod=20, nbdevup=2, nbdevdn=2)
    expected = {
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
    for name, values in expected.items():
        np.testing.assert_array_equal(result[name].to_numpy(), values, err_msg=name)


def test_all_defined_from_min_history_on(xrp_frame: pd.DataFrame) -> None:
    result = indicator_frame(xrp_frame)
    assert not result.iloc[MIN_HISTORY - 1 :].isna().any().any()
    assert result.iloc[: MIN_HISTORY - 1].isna().any(axis=1).any()


def test_keeps_a_non_default_index(xrp_frame: pd.DataFrame) -> None:
    indexed = xrp_frame.set_index("ts")
    assert indicator_frame(indexed).index.equals(indexed.index)


def test_latest_equals_last_row_of_frame(xrp_frame: pd.DataFrame) -> None:
    candles = _candles(xrp_frame)
    for end in (MIN_HISTORY, 300, len(candles)):
        window = xrp_frame.iloc[:end]
        latest = latest_indicators(candles[:end])
        assert latest is not None
        assert latest == indicator_frame(window).iloc[-1].to_dict()


def test_latest_is_none_without_enough_history(xrp_frame: pd.DataFrame) -> None:
    candles = _candles(xrp_frame)
    assert latest_indicators(candles[: MIN_HISTORY - 1]) is None
    assert latest_indicators([]) is None
