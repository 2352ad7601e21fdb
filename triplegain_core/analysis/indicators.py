"""Technical indicators over OHLCV candles, computed with TA-Lib.

Two sets live here:

- the core set (``INDICATOR_NAMES``) of the TechnicalAgent: one computation (:func:`core_indicator_arrays`)
  feeds both the whole-history frame and the latest-values dict of the hot path;
- the full set (``FEATURE_NAMES``, :class:`IndicatorValues`) of issue #4: 38 series from 28
  indicators, batch here (:func:`feature_frame`), incremental in
  :mod:`triplegain_core.analysis.incremental_indicators` with the same values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import talib

from triplegain_core.marketdata.timeframes import ANALYSIS_TIMEFRAMES, resample_candles
from triplegain_core.model.market import US_PER_DAY, Candle

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


def core_indicator_arrays(
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
    arrays = core_indicator_arrays(
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
    latest = {name: float(values[-1]) for name, values in core_indicator_arrays(high, low, close).items()}
    if any(math.isnan(value) for value in latest.values()):
        return None
    return latest


# ---------------------------------------------------------------------------------------
# The full indicator set (issue #4): TA-Lib wherever TA-Lib has the indicator, small
# compositions of TA-Lib primitives with a documented formula where it does not. The
# incremental twin lives in triplegain_core.analysis.incremental_indicators and is built from the
# same primitives (TA-Lib's streaming handles), so batch and live values agree bit for bit.
# ---------------------------------------------------------------------------------------

EMA_PERIODS = (9, 21, 50)
SMA_PERIOD = 20
ADX_PERIOD = 14
RSI_PERIOD = 14
MACD_PERIODS = (12, 26, 9)
ROC_PERIOD = 10
STOCH_PERIODS = (14, 3, 3)  # fast %K, slow %K (SMA), slow %D (SMA)
ATR_PERIOD = 14
BB_PERIOD, BB_DEVIATIONS = 20, 2.0
KC_PERIOD, KC_ATR_PERIOD, KC_MULTIPLIER = 20, 10, 2.0
DONCHIAN_PERIOD = 20
VOLUME_RATIO_PERIOD = 20
CHOP_PERIOD = 14
WAVETREND_PERIODS = (10, 21, 4)  # channel, average, signal
VPIN_PERIOD, VPIN_SIGMA_PERIOD = 50, 50
REALIZED_VOL_PERIOD = 30
ZSCORE_PERIOD = 50
CCI_PERIOD = 20
MFI_PERIOD = 14
WILLR_PERIOD = 14


@dataclass(frozen=True, slots=True)
class IndicatorValues:
    """The whole indicator set at one candle; NaN while an indicator warms up.

    Price-scaled values (EMAs, bands, ATR, VWAP) are in the quote currency; ``natr_14``,
    ``bb_width`` and ``realized_vol`` are relative (percent, fraction, log-return units);
    oscillators keep their usual ranges (RSI/ADX/DI/Stoch/MFI/CHOP 0..100, Williams %R
    -100..0, VPIN 0..1).
    """

    ema_9: float
    ema_21: float
    ema_50: float
    sma_20: float
    adx_14: float
    plus_di_14: float
    minus_di_14: float
    rsi_14: float
    macd: float
    macd_signal: float
    macd_hist: float
    roc_10: float
    stoch_k: float
    stoch_d: float
    atr_14: float
    natr_14: float
    bb_upper: float
    bb_middle: float
    bb_lower: float
    bb_width: float
    kc_upper: float
    kc_middle: float
    kc_lower: float
    dc_upper: float
    dc_middle: float
    dc_lower: float
    obv: float
    vwap: float
    volume_ratio: float
    chop_14: float
    wt1: float
    wt2: float
    vpin: float
    realized_vol: float
    close_zscore: float
    cci_20: float
    mfi_14: float
    willr_14: float

    def as_dict(self) -> dict[str, float]:
        """Name -> value, in FEATURE_NAMES order (for storage and JSON, not for passing around)."""
        return {name: getattr(self, name) for name in FEATURE_NAMES}

    def is_complete(self) -> bool:
        """True once every indicator has a finite value."""
        return all(math.isfinite(getattr(self, name)) for name in FEATURE_NAMES)


FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(IndicatorValues))

# Bars before every FEATURE_NAMES value is defined: VPIN needs one price change, then
# VPIN_SIGMA_PERIOD changes for its sigma, then VPIN_PERIOD imbalances (1 + 49 + 49 = 99).
FEATURE_WARMUP: int = 1 + (VPIN_SIGMA_PERIOD - 1) + VPIN_PERIOD


def bollinger_width(upper: np.ndarray, middle: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Band width relative to the middle band: ``(upper - lower) / middle`` (NaN if middle is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(middle != 0.0, (upper - lower) / middle, np.nan)


def choppiness(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = CHOP_PERIOD) -> np.ndarray:
    """Choppiness index, 0..100 (high = ranging, low = trending)::

        CHOP_t = 100 * log10( sum_{i=t-n+1..t} TR_i / (max(high, n) - min(low, n)) ) / log10(n)

    with TR the true range (needs the previous close, so the first value is at index n).
    NaN where the n-bar range is zero (nothing traded away from one price).
    """
    tr_sum = talib.SUM(talib.TRANGE(high, low, close), timeperiod=period)
    price_range = talib.MAX(high, timeperiod=period) - talib.MIN(low, timeperiod=period)
    ratio = np.full_like(close, np.nan)
    ranged = price_range > 0.0
    ratio[ranged] = tr_sum[ranged] / price_range[ranged]
    # libm's log10 element by element (not numpy's vectorized one), as the incremental twin.
    log10: np.ndarray = np.frompyfunc(math.log10, 1, 1)(ratio).astype(np.float64)
    return 100.0 * log10 / math.log10(period)


def wavetrend_channel_index(typical: np.ndarray, esa: np.ndarray, deviation: np.ndarray) -> np.ndarray:
    """WaveTrend's CI = (ap - esa) / (0.015 * d); 0 when d is 0 (price has not moved at all)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ci = (typical - esa) / (0.015 * deviation)
    return np.where(deviation == 0.0, 0.0, ci)


def wavetrend(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, periods: tuple[int, int, int] = WAVETREND_PERIODS
) -> tuple[np.ndarray, np.ndarray]:
    """LazyBear's WaveTrend oscillator (wt1, wt2)::

        ap  = (high + low + close) / 3
        esa = EMA(ap, n1);   d = EMA(|ap - esa|, n1)
        ci  = (ap - esa) / (0.015 * d)          (0 when d = 0)
        wt1 = EMA(ci, n2);   wt2 = SMA(wt1, n3)

    Every EMA is TA-Lib's (seeded with the SMA of its first n inputs, leading NaN skipped).
    """
    channel, average, signal = periods
    typical = talib.TYPPRICE(high, low, close)
    esa = talib.EMA(typical, timeperiod=channel)
    deviation = talib.EMA(np.abs(typical - esa), timeperiod=channel)
    wt1 = talib.EMA(wavetrend_channel_index(typical, esa, deviation), timeperiod=average)
    return wt1, talib.SMA(wt1, timeperiod=signal)


def bvc_imbalance(price_change: np.ndarray, sigma: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Bulk-volume-classified order imbalance of each bar: ``V * |2 Phi(dP / sigma) - 1|``.

    ``|2 Phi(z) - 1| = erf(|z| / sqrt 2)``; z is 0 when sigma is 0 (no price variation).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sigma > 0.0, price_change / sigma, 0.0)
    erf = np.frompyfunc(math.erf, 1, 1)
    imbalance = volume * np.asarray(erf(np.abs(z) / math.sqrt(2.0)), dtype=np.float64)
    return np.where(np.isnan(sigma), np.nan, imbalance)


def vpin(
    close: np.ndarray, volume: np.ndarray, period: int = VPIN_PERIOD, sigma_period: int = VPIN_SIGMA_PERIOD
) -> np.ndarray:
    """Volume-synchronized probability of informed trading, 0..1, on time bars::

        dP_t  = close_t - close_{t-1};   sigma_t = population stdev of dP over sigma_period bars
        OI_t  = V_t * |2 Phi(dP_t / sigma_t) - 1|        (bulk volume classification)
        VPIN_t = sum(OI, n) / sum(V, n)

    Easley, Lopez de Prado & O'Hara (2012) with bars instead of equal-volume buckets, the
    usual approximation when only candles are known. NaN where the window traded nothing.
    """
    price_change = talib.MOM(close, timeperiod=1)
    sigma = talib.STDDEV(price_change, timeperiod=sigma_period, nbdev=1.0)
    imbalance_sum = talib.SUM(bvc_imbalance(price_change, sigma, volume), timeperiod=period)
    volume_sum = talib.SUM(volume, timeperiod=period)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(volume_sum > 0.0, imbalance_sum / volume_sum, np.nan)


def realized_volatility(close: np.ndarray, period: int = REALIZED_VOL_PERIOD) -> np.ndarray:
    """Realized volatility over n bars, in log-return units (not annualized)::

        RV_t = sqrt( sum_{i=t-n+1..t} ln(close_i / close_{i-1})^2 )
    """
    log_return = talib.LN(talib.ROCR(close, timeperiod=1))
    return np.sqrt(talib.SUM(log_return * log_return, timeperiod=period))


def rolling_zscore(values: np.ndarray, period: int = ZSCORE_PERIOD) -> np.ndarray:
    """``(x_t - SMA(x, n)) / STDDEV(x, n)`` with the population stdev; 0 where the stdev is 0."""
    mean = talib.SMA(values, timeperiod=period)
    std = talib.STDDEV(values, timeperiod=period, nbdev=1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(std > 0.0, (values - mean) / std, 0.0)
    return np.where(np.isnan(std), np.nan, z)


def ratio_zscore(numerator: np.ndarray, denominator: np.ndarray, period: int = ZSCORE_PERIOD) -> np.ndarray:
    """Z-score of the price ratio ``numerator / denominator`` (e.g. XRP/USDT over BTC/USDT = XRP/BTC).

    The two closes must be aligned on the same candle open times. For a pair that is itself
    the ratio (XRP/BTC), the feature set's ``close_zscore`` is this with a denominator of 1.
    """
    if numerator.shape != denominator.shape:
        raise ValueError(f"ratio legs differ in length: {numerator.shape} vs {denominator.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(denominator != 0.0, numerator / denominator, np.nan)
    return rolling_zscore(ratio, period)


def session_vwap(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, session: np.ndarray
) -> np.ndarray:
    """TA-Lib's cumulative VWAP (sum(typical * V) / sum(V)) restarted at each session.

    ``session`` labels each bar (the UTC day number in the feature set); a new label starts
    a new anchor, as charting packages reset VWAP at the session open.
    """
    out = np.empty_like(close)
    starts = np.flatnonzero(np.diff(session, prepend=session[:1] - 1) != 0)
    for begin, end in zip(starts, [*starts[1:], len(close)], strict=True):
        out[begin:end] = talib.VWAP(high[begin:end], low[begin:end], close[begin:end], volume[begin:end])
    return out


def utc_day(open_times_us: np.ndarray) -> np.ndarray:
    """UTC day number of each epoch-microsecond open time (the VWAP session)."""
    return open_times_us // US_PER_DAY


def open_times_us(candles: pd.DataFrame) -> np.ndarray:
    """Epoch microseconds of each candle's open, from ``open_time``/``ts`` or a DatetimeIndex."""
    for column in ("open_time", "ts"):
        if column in candles.columns:
            from_column: np.ndarray = pd.DatetimeIndex(candles[column]).as_unit("us").asi8
            return from_column
    if isinstance(candles.index, pd.DatetimeIndex):
        from_index: np.ndarray = candles.index.as_unit("us").asi8
        return from_index
    raise ValueError("candles need an 'open_time' or 'ts' column or a DatetimeIndex (VWAP sessions)")


def compute_features(
    open_time_us: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
) -> dict[str, np.ndarray]:
    """Every FEATURE_NAMES indicator as a float64 array aligned with the inputs."""
    ema_fast, ema_mid, ema_slow = (talib.EMA(close, timeperiod=p) for p in EMA_PERIODS)
    macd, macd_signal, macd_hist = talib.MACD(
        close, fastperiod=MACD_PERIODS[0], slowperiod=MACD_PERIODS[1], signalperiod=MACD_PERIODS[2]
    )
    stoch_k, stoch_d = talib.STOCH(
        high, low, close, fastk_period=STOCH_PERIODS[0], slowk_period=STOCH_PERIODS[1], slowk_matype=talib.MA_Type.SMA,
        slowd_period=STOCH_PERIODS[2], slowd_matype=talib.MA_Type.SMA,
    )
    bb_upper, bb_middle, bb_lower = talib.BBANDS(
        close, timeperiod=BB_PERIOD, nbdevup=BB_DEVIATIONS, nbdevdn=BB_DEVIATIONS, matype=talib.MA_Type.SMA
    )
    kc_upper, kc_middle, kc_lower = talib.KC(
        high, low, close, timeperiod=KC_PERIOD, atrperiod=KC_ATR_PERIOD, nbdev=KC_MULTIPLIER
    )
    dc_upper, dc_middle, dc_lower = talib.DONCHIAN(high, low, timeperiod=DONCHIAN_PERIOD)
    wt1, wt2 = wavetrend(high, low, close)
    return {
        "ema_9": ema_fast,
        "ema_21": ema_mid,
        "ema_50": ema_slow,
        "sma_20": talib.SMA(close, timeperiod=SMA_PERIOD),
        "adx_14": talib.ADX(high, low, close, timeperiod=ADX_PERIOD),
        "plus_di_14": talib.PLUS_DI(high, low, close, timeperiod=ADX_PERIOD),
        "minus_di_14": talib.MINUS_DI(high, low, close, timeperiod=ADX_PERIOD),
        "rsi_14": talib.RSI(close, timeperiod=RSI_PERIOD),
        "macd": macd,
        "macd_signal": macd_signal,
        "macd_hist": macd_hist,
        "roc_10": talib.ROC(close, timeperiod=ROC_PERIOD),
        "stoch_k": stoch_k,
        "stoch_d": stoch_d,
        "atr_14": talib.ATR(high, low, close, timeperiod=ATR_PERIOD),
        "natr_14": talib.NATR(high, low, close, timeperiod=ATR_PERIOD),
        "bb_upper": bb_upper,
        "bb_middle": bb_middle,
        "bb_lower": bb_lower,
        "bb_width": bollinger_width(bb_upper, bb_middle, bb_lower),
        "kc_upper": kc_upper,
        "kc_middle": kc_middle,
        "kc_lower": kc_lower,
        "dc_upper": dc_upper,
        "dc_middle": dc_middle,
        "dc_lower": dc_lower,
        "obv": talib.OBV(close, volume),
        "vwap": session_vwap(high, low, close, volume, utc_day(open_time_us)),
        "volume_ratio": talib.RVOL(volume, timeperiod=VOLUME_RATIO_PERIOD),
        "chop_14": choppiness(high, low, close, CHOP_PERIOD),
        "wt1": wt1,
        "wt2": wt2,
        "vpin": vpin(close, volume),
        "realized_vol": realized_volatility(close),
        "close_zscore": rolling_zscore(close),
        "cci_20": talib.CCI(high, low, close, timeperiod=CCI_PERIOD),
        "mfi_14": talib.MFI(high, low, close, volume, timeperiod=MFI_PERIOD),
        "willr_14": talib.WILLR(high, low, close, timeperiod=WILLR_PERIOD),
    }


def feature_frame(candles: pd.DataFrame) -> pd.DataFrame:
    """One float column per FEATURE_NAMES for an OHLCV frame ordered by open time.

    ``candles`` needs float ``high``, ``low``, ``close``, ``volume`` and the open time (an
    ``open_time`` or ``ts`` column, or a DatetimeIndex) for the daily VWAP sessions.
    Values are NaN during each indicator's warm-up. Recursive indicators (EMA, RSI, ATR,
    ADX, ...) are seeded at the first candle of the frame, as TA-Lib does.
    """
    arrays = compute_features(
        open_times_us(candles),
        *(candles[c].to_numpy(dtype=np.float64) for c in ("high", "low", "close", "volume")),
    )
    return pd.DataFrame(arrays, index=candles.index, columns=list(FEATURE_NAMES))


def values_at(frame: pd.DataFrame, position: int = -1) -> IndicatorValues:
    """The row ``position`` of a :func:`feature_frame` as typed values."""
    row = frame.iloc[position]
    return IndicatorValues(**{name: float(row[name]) for name in FEATURE_NAMES})


def multi_timeframe_feature_frames(
    candles: pd.DataFrame, timeframes: Sequence[str] = ANALYSIS_TIMEFRAMES, source: str = "1m"
) -> dict[str, pd.DataFrame]:
    """Per timeframe, the resampled candles with their FEATURE_NAMES columns appended.

    ``candles`` are ``source`` candles with an ``open_time`` or ``ts`` column; each higher
    timeframe is built by :func:`~triplegain_core.marketdata.timeframes.resample_candles`.
    """
    frames: dict[str, pd.DataFrame] = {}
    for timeframe in timeframes:
        if timeframe == source:
            bars = candles.reset_index(drop=True)
        else:
            bars = resample_candles(candles, timeframe, source=source)
        frames[timeframe] = pd.concat([bars, feature_frame(bars)], axis=1)
    return frames
