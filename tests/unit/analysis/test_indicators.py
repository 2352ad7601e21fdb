"""Indicators equal TA-Lib called directly on real candles; the others equal independent
computations on hand-checkable inputs; resampling equals the exchange's own candles."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from triplegain_core.analysis.indicators import (
    FEATURE_NAMES,
    FEATURE_WARMUP,
    INDICATOR_NAMES,
    MIN_HISTORY,
    US_PER_DAY,
    bollinger_width,
    choppiness,
    feature_frame,
    indicator_frame,
    latest_indicators,
    multi_timeframe_feature_frames,
    ratio_zscore,
    realized_volatility,
    rolling_zscore,
    session_vwap,
    utc_day,
    values_at,
    vpin,
    wavetrend,
)
from triplegain_core.marketdata.timeframes import resample_candles
from triplegain_core.model.market import Candle, datetime_to_us

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
    assert set(INDICATOR_NAMES) >= REQUIRED


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


# --- The full indicator set (issue #4) -------------------------------------------------

ISSUE_INDICATORS = {
    "ema_9", "ema_21", "ema_50", "sma_20", "adx_14", "plus_di_14", "minus_di_14", "rsi_14", "macd",
    "roc_10", "stoch_k", "atr_14", "bb_upper", "bb_width", "kc_upper", "dc_upper", "obv", "vwap",
    "volume_ratio", "chop_14", "wt1", "vpin", "realized_vol", "close_zscore",
}


REAL_5M = ["binance_xrp-usdt-perp_5m.parquet", "binance_eth-btc_5m.parquet"]


@pytest.fixture(scope="module", params=REAL_5M)
def real_frame(request: pytest.FixtureRequest, shared_data: Path) -> pd.DataFrame:
    return pd.read_parquet(shared_data / request.param)


def _ohlcv(frame: pd.DataFrame) -> tuple[np.ndarray, ...]:
    return tuple(frame[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close", "volume"))


def test_feature_names_cover_the_issue_and_are_unique() -> None:
    assert set(FEATURE_NAMES) >= ISSUE_INDICATORS
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) >= 25
    assert set(INDICATOR_NAMES) <= set(FEATURE_NAMES)


def test_talib_backed_features_equal_talib_directly(real_frame: pd.DataFrame) -> None:
    result = feature_frame(real_frame)
    assert list(result.columns) == list(FEATURE_NAMES)
    _, high, low, close, volume = _ohlcv(real_frame)
    macd, macd_signal, macd_hist = talib.MACD(close, 12, 26, 9)
    stoch_k, stoch_d = talib.STOCH(high, low, close, 14, 3, 0, 3, 0)
    bb_upper, bb_middle, bb_lower = talib.BBANDS(close, 20, 2.0, 2.0, 0)
    kc_upper, kc_middle, kc_lower = talib.KC(high, low, close, 20, 10, 2.0)
    dc_upper, dc_middle, dc_lower = talib.DONCHIAN(high, low, 20)
    expected = {
        "ema_9": talib.EMA(close, 9), "ema_21": talib.EMA(close, 21), "ema_50": talib.EMA(close, 50),
        "sma_20": talib.SMA(close, 20), "adx_14": talib.ADX(high, low, close, 14),
        "plus_di_14": talib.PLUS_DI(high, low, close, 14), "minus_di_14": talib.MINUS_DI(high, low, close, 14),
        "rsi_14": talib.RSI(close, 14), "macd": macd, "macd_signal": macd_signal, "macd_hist": macd_hist,
        "roc_10": talib.ROC(close, 10), "stoch_k": stoch_k, "stoch_d": stoch_d,
        "atr_14": talib.ATR(high, low, close, 14), "natr_14": talib.NATR(high, low, close, 14),
        "bb_upper": bb_upper, "bb_middle": bb_middle, "bb_lower": bb_lower,
        "kc_upper": kc_upper, "kc_middle": kc_middle, "kc_lower": kc_lower,
        "dc_upper": dc_upper, "dc_middle": dc_middle, "dc_lower": dc_lower,
        "obv": talib.OBV(close, volume), "volume_ratio": talib.RVOL(volume, 20),
        "cci_20": talib.CCI(high, low, close, 20), "mfi_14": talib.MFI(high, low, close, volume, 14),
        "willr_14": talib.WILLR(high, low, close, 14),
    }
    for name, values in expected.items():
        np.testing.assert_array_equal(result[name].to_numpy(), values, err_msg=name)


def test_core_columns_equal_in_both_sets(real_frame: pd.DataFrame) -> None:
    full = feature_frame(real_frame)
    core = indicator_frame(real_frame)
    for name in INDICATOR_NAMES:
        np.testing.assert_array_equal(full[name].to_numpy(), core[name].to_numpy(), err_msg=name)


def test_every_feature_defined_from_the_warmup_on(real_frame: pd.DataFrame) -> None:
    result = feature_frame(real_frame)
    assert result.iloc[FEATURE_WARMUP - 1 :].notna().all().all()
    assert result.iloc[FEATURE_WARMUP - 2].isna().any()
    assert values_at(result).is_complete()
    assert not values_at(result, FEATURE_WARMUP - 2).is_complete()


def test_feature_frame_needs_the_open_time(real_frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="open_time"):
        feature_frame(real_frame.drop(columns="ts"))
    indexed = real_frame.set_index("ts")
    np.testing.assert_array_equal(feature_frame(indexed).to_numpy(), feature_frame(real_frame).to_numpy())


# Independent computations on small hand-checkable inputs. The reference EMA/SMA below are
# written from the textbook definitions TA-Lib documents (EMA seeded with the SMA of its
# first n inputs), in plain Python loops.


def _ref_sma(values: list[float], n: int) -> list[float]:
    return [math.nan if i < n - 1 else sum(values[i - n + 1 : i + 1]) / n for i in range(len(values))]


def _ref_ema(values: list[float], n: int) -> list[float]:
    out = [math.nan] * len(values)
    first = next(i for i, v in enumerate(values) if not math.isnan(v))
    if len(values) - first < n:
        return out
    k = 2.0 / (n + 1)
    ema = sum(values[first : first + n]) / n
    out[first + n - 1] = ema
    for i in range(first + n, len(values)):
        ema = ema + k * (values[i] - ema)
        out[i] = ema
    return out


def _ref_std(window: list[float]) -> float:
    mean = sum(window) / len(window)
    return math.sqrt(sum((x - mean) ** 2 for x in window) / len(window))


def test_bollinger_width_by_hand() -> None:
    width = bollinger_width(np.array([12.0, 5.0]), np.array([10.0, 0.0]), np.array([8.0, -5.0]))
    assert width[0] == pytest.approx(0.4)
    assert math.isnan(width[1])


def test_choppiness_by_hand() -> None:
    high = np.array([10.0, 11.0, 12.0, 11.5])
    low = np.array([9.0, 10.0, 10.5, 10.0])
    close = np.array([9.5, 10.5, 11.0, 10.2])
    chop = choppiness(high, low, close, period=2)
    # TR_1 = max(11-10, |11-9.5|, |10-9.5|) = 1.5; TR_2 = max(1.5, 1.5, 0) = 1.5; TR_3 = max(1.5, 0.5, 1) = 1.5
    # bar 2: range = 12 - 10 = 2 -> 100*log10(3/2)/log10(2); bar 3: range = 12 - 10 = 2, sum 3
    assert math.isnan(chop[0]) and math.isnan(chop[1])
    assert chop[2] == pytest.approx(100 * math.log10(3.0 / 2.0) / math.log10(2))
    assert chop[3] == pytest.approx(100 * math.log10(3.0 / 2.0) / math.log10(2))
    flat = choppiness(np.full(5, 1.0), np.full(5, 1.0), np.full(5, 1.0), period=2)
    assert np.isnan(flat).all()


def test_wavetrend_equals_the_reference_loop() -> None:
    rng = np.random.default_rng(7)
    close = 100 + np.cumsum(rng.normal(0, 1, 80))
    high, low = close + rng.uniform(0, 1, 80), close - rng.uniform(0, 1, 80)
    wt1, wt2 = wavetrend(high, low, close, (4, 6, 3))
    ap = [(h + lo + c) / 3 for h, lo, c in zip(high, low, close, strict=True)]
    esa = _ref_ema(ap, 4)
    d = _ref_ema([abs(a - e) for a, e in zip(ap, esa, strict=True)], 4)
    ci = [(a - e) / (0.015 * dd) for a, e, dd in zip(ap, esa, d, strict=True)]
    ref1 = _ref_ema(ci, 6)
    ref2 = _ref_sma(ref1, 3)
    np.testing.assert_allclose(wt1, ref1, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(wt2, ref2, rtol=1e-9, equal_nan=True)
    flat1, flat2 = wavetrend(np.full(60, 2.0), np.full(60, 2.0), np.full(60, 2.0), (4, 6, 3))
    assert flat1[-1] == 0.0 and flat2[-1] == 0.0  # no deviation: CI is 0, not a division by zero


def test_vpin_equals_the_reference_loop() -> None:
    close = np.array([10.0, 10.5, 10.2, 10.8, 10.8, 10.1, 10.4, 10.9])
    volume = np.array([5.0, 3.0, 4.0, 6.0, 2.0, 8.0, 1.0, 3.0])
    result = vpin(close, volume, period=3, sigma_period=3)
    change = [math.nan] + [close[i] - close[i - 1] for i in range(1, len(close))]
    expected = [math.nan] * len(close)
    for t in range(5, len(close)):  # sigma from bar 3, so three imbalances from bar 5
        imbalances = []
        for i in range(t - 2, t + 1):
            sigma = _ref_std(change[i - 2 : i + 1])
            z = change[i] / sigma
            buy = volume[i] * 0.5 * (1 + math.erf(z / math.sqrt(2)))
            imbalances.append(abs(buy - (volume[i] - buy)))
        expected[t] = sum(imbalances) / volume[t - 2 : t + 1].sum()
    np.testing.assert_allclose(result, expected, rtol=1e-9, equal_nan=True)
    assert np.nanmax(result) <= 1.0


def test_realized_volatility_by_hand() -> None:
    close = np.exp(np.array([0.0, 0.1, 0.3, 0.0]))
    rv = realized_volatility(close, period=2)
    assert math.isnan(rv[1])
    assert rv[2] == pytest.approx(math.sqrt(0.1**2 + 0.2**2))
    assert rv[3] == pytest.approx(math.sqrt(0.2**2 + 0.3**2))


def test_zscores_by_hand() -> None:
    z = rolling_zscore(np.array([1.0, 2.0, 3.0, 3.0, 3.0, 3.0]), period=3)
    assert math.isnan(z[1])
    assert z[2] == pytest.approx(1.0 / math.sqrt(2.0 / 3.0))
    assert z[5] == 0.0  # constant window: zero deviation, z is 0
    ratio = ratio_zscore(np.array([2.0, 4.0, 6.0]), np.array([2.0, 2.0, 2.0]), period=3)
    assert ratio[2] == pytest.approx(1.0 / math.sqrt(2.0 / 3.0))
    with pytest.raises(ValueError):
        ratio_zscore(np.ones(3), np.ones(4))


def test_ratio_zscore_of_the_legs_is_the_zscore_of_the_cross(shared_data: Path) -> None:
    eth_btc = pd.read_parquet(shared_data / "binance_eth-btc_5m.parquet")["close"].to_numpy()
    btc_usdt = np.linspace(10_000.0, 12_000.0, len(eth_btc))
    eth_usdt = eth_btc * btc_usdt
    np.testing.assert_allclose(ratio_zscore(eth_usdt, btc_usdt), rolling_zscore(eth_btc), rtol=1e-6, atol=1e-6)


def test_session_vwap_restarts_each_utc_day() -> None:
    day = US_PER_DAY
    times = np.array([day - 120_000_000, day - 60_000_000, day, day + 60_000_000])
    high = np.array([11.0, 12.0, 20.0, 22.0])
    low = np.array([9.0, 10.0, 18.0, 20.0])
    close = np.array([10.0, 11.0, 19.0, 21.0])
    volume = np.array([1.0, 3.0, 2.0, 2.0])
    vwap = session_vwap(high, low, close, volume, utc_day(times))
    assert vwap[0] == pytest.approx(10.0)
    assert vwap[1] == pytest.approx((10.0 * 1 + 11.0 * 3) / 4)
    assert vwap[2] == pytest.approx(19.0)  # new day: the anchor moved
    assert vwap[3] == pytest.approx((19.0 * 2 + 21.0 * 2) / 4)


def test_donchian_and_keltner_definitions() -> None:
    rng = np.random.default_rng(3)
    close = 50 + np.cumsum(rng.normal(0, 1, 60))
    high, low = close + 1.0, close - 1.0
    upper, middle, lower = talib.DONCHIAN(high, low, 20)
    assert upper[-1] == high[-20:].max() and lower[-1] == low[-20:].min()
    assert middle[-1] == pytest.approx((upper[-1] + lower[-1]) / 2)
    kc_upper, kc_middle, _kc_lower = talib.KC(high, low, close, 20, 10, 2.0)
    typical = (high + low + close) / 3
    assert kc_middle[-1] == pytest.approx(_ref_ema(list(typical), 20)[-1])
    # TA-Lib's KC enters its ATR leg at the band's own first bar (19), so that ATR is
    # seeded on the true ranges of bars 10..19, i.e. ATR over the series from bar 9.
    assert kc_upper[-1] - kc_middle[-1] == pytest.approx(2.0 * talib.ATR(high[9:], low[9:], close[9:], 10)[-1])


# --- Multi-timeframe -------------------------------------------------------------------


def test_resampled_1m_equals_the_exchange_5m(shared_data: Path) -> None:
    one = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet")
    five = pd.read_parquet(shared_data / "binance_xrp-eth_5m.parquet")
    pd.testing.assert_frame_equal(resample_candles(one, "5m"), five, check_exact=True)


def test_resample_leaves_out_an_unfinished_last_bucket(shared_data: Path) -> None:
    one = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet")
    assert one["ts"].iloc[-1].minute % 5 == 4  # the file ends on a complete 5m bucket
    trimmed = resample_candles(one.iloc[:-1], "5m")
    assert len(trimmed) == len(resample_candles(one, "5m")) - 1
    with pytest.raises(ValueError):
        resample_candles(one, "7m")
    with pytest.raises(ValueError):
        resample_candles(one.iloc[::-1], "5m")


def test_multi_timeframe_frames(shared_data: Path) -> None:
    one = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet")
    frames = multi_timeframe_feature_frames(one)
    assert list(frames) == ["1m", "5m", "15m", "1h"]
    for timeframe, frame in frames.items():
        bars = one if timeframe == "1m" else resample_candles(one, timeframe)
        assert len(frame) == len(bars)
        np.testing.assert_array_equal(frame[list(FEATURE_NAMES)].to_numpy(), feature_frame(bars).to_numpy())
    assert len(frames["1h"]) == 59
