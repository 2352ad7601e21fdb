"""The full indicator set, updated one closed candle at a time.

:class:`IncrementalIndicators` holds, for one (symbol, timeframe), one TA-Lib streaming
handle (``talib.stream``) per TA-Lib function the batch set calls. A handle carries the
function's own recursive state (EMA/Wilder seeds, running sums, ring buffers), so an update
costs O(1) (O(window) for the rolling min/max and deviation functions) and never recomputes
history; TA-Lib guarantees each handle's value is bit-identical to its function API over the
same bars. The compositions that TA-Lib lacks (Choppiness, WaveTrend, VPIN, realized
volatility, z-score, session VWAP, band width) chain handles exactly as
:func:`triplegain_core.analysis.indicators.compute_features` chains functions, so an instance fed
from the first candle of a history equals :func:`~triplegain_core.analysis.indicators.feature_frame`
over that history at every candle.

A handle can only be opened on ``lookback + 1`` usable bars; until then its inputs are kept
in a short warm-up buffer and the value is NaN, exactly where the batch value is NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import talib
from talib import abstract, stream

from triplegain_core.analysis import indicators as ind
from triplegain_core.analysis.indicators import IndicatorValues
from triplegain_core.marketdata.timeframes import ANALYSIS_TIMEFRAMES, CandleResampler
from triplegain_core.model.market import US_PER_DAY, Candle

log = logging.getLogger(__name__)

NAN = math.nan
_SQRT2 = math.sqrt(2.0)


class _Warmup:
    """One TA-Lib stream, opened once enough finite history has been pushed.

    Until then the bars' inputs are kept; :class:`_Handle` and :class:`_MultiHandle` give the
    stream's values their types (one float, or one per output).
    """

    __slots__ = ("_factory", "_history", "_need", "_outputs", "_params", "_stream")

    def __init__(self, name: str, **params: float) -> None:
        # talib's abstract.pyi leaves out Function, which its abstract.py defines.
        function = abstract.Function(name)  # type: ignore[attr-defined]
        function.set_parameters(params)
        # Looked up by name, so typed by what the subclass's push returns, not by one function's stub.
        self._factory: Callable[..., Any] = getattr(stream, name)
        self._params = params
        self._need: int = function.lookback + 1
        self._outputs: int = len(function.output_names)
        n_inputs = sum(len(v) if isinstance(v, list) else 1 for v in function.input_names.values())
        self._history: list[list[float]] | None = [[] for _ in range(n_inputs)]
        self._stream: Any = None

    def _open(self, inputs: tuple[float, ...]) -> Any:
        """Keep ``inputs`` for the warm-up; the stream once it opens on them, else None."""
        history = self._history
        assert history is not None
        for column, value in zip(history, inputs, strict=True):
            column.append(value)
        if len(history[0]) < self._need:
            return None
        try:
            self._stream = self._factory(*(np.asarray(c, dtype=np.float64) for c in history), **self._params)
        except talib.InsufficientHistory:
            # A few functions seed on more bars than their lookback; try again next bar.
            return None
        self._history = None
        return self._stream


class _Handle(_Warmup):
    """A single-output stream: ``push`` returns the value at the bar, NaN while warming up."""

    __slots__ = ()

    def __init__(self, name: str, **params: float) -> None:
        super().__init__(name, **params)
        if self._outputs != 1:
            raise ValueError(f"{name} has {self._outputs} outputs: use a _MultiHandle")

    def push(self, *inputs: float) -> float:
        value: float
        if self._stream is not None:
            value = self._stream.update(*inputs)
            return value
        opened = self._open(inputs)
        if opened is None:
            return NAN
        value = opened.value
        return value


class _MultiHandle(_Warmup):
    """A multi-output stream: ``push`` returns one value per output, NaNs while warming up."""

    __slots__ = ("_blank",)

    def __init__(self, name: str, **params: float) -> None:
        super().__init__(name, **params)
        if self._outputs < 2:
            raise ValueError(f"{name} has one output: use a _Handle")
        self._blank: tuple[float, ...] = (NAN,) * self._outputs

    def push(self, *inputs: float) -> tuple[float, ...]:
        values: tuple[float, ...]
        if self._stream is not None:
            values = self._stream.update(*inputs)
            return values
        opened = self._open(inputs)
        if opened is None:
            return self._blank
        values = opened.value
        return values


@dataclass(frozen=True, slots=True)
class IndicatorSnapshot:
    """The indicator set after one closed candle of one (symbol, timeframe)."""

    symbol: str
    timeframe: str
    open_time_us: int
    close: float
    values: IndicatorValues

    @property
    def is_complete(self) -> bool:
        """True once every indicator is past its warm-up."""
        return self.values.is_complete()


def candle_problem(candle: Candle) -> str | None:
    """Why a candle cannot be fed to the indicators, or None when it is sound."""
    prices = (candle.open, candle.high, candle.low, candle.close)
    if not all(math.isfinite(p) for p in (*prices, candle.volume)):
        return "non-finite price or volume"
    if min(prices) <= 0.0:
        return "non-positive price"
    if candle.volume < 0.0:
        return "negative volume"
    if candle.high < max(candle.open, candle.close, candle.low) or candle.low > min(candle.open, candle.close):
        return "high/low do not bound open/close"
    return None


def feed_problem(candle: Candle, symbol: str, timeframe: str, last_open_us: int | None) -> str | None:
    """Why ``candle`` cannot extend the (symbol, timeframe) series last fed at ``last_open_us``."""
    if candle.symbol != symbol or candle.timeframe != timeframe:
        return f"belongs to {candle.symbol} {candle.timeframe}"
    if last_open_us is not None and candle.open_time_us <= last_open_us:
        return f"not after the previous candle ({last_open_us})"
    return candle_problem(candle)


class IncrementalIndicators:
    """The FEATURE_NAMES indicators of one (symbol, timeframe), fed closed candles in order.

    ``update`` returns the latest values, or None for a candle it rejects (wrong symbol or
    timeframe, not after the previous one, or unsound prices); rejections are logged and
    counted in ``rejected`` and leave the state untouched, so a bad candle never breaks the
    loop nor poisons later values.
    """

    def __init__(self, symbol: str, timeframe: str) -> None:
        self.symbol = symbol
        self.timeframe = timeframe
        self.rejected = 0
        self.updates = 0
        self.last: IndicatorSnapshot | None = None
        self._last_open_us: int | None = None
        self._prev_close = NAN
        self._session: int | None = None
        self._vwap: stream.VWAP | None = None

        fast, mid, slow = ind.EMA_PERIODS
        self._ema_fast = _Handle("EMA", timeperiod=fast)
        self._ema_mid = _Handle("EMA", timeperiod=mid)
        self._ema_slow = _Handle("EMA", timeperiod=slow)
        self._sma = _Handle("SMA", timeperiod=ind.SMA_PERIOD)
        self._adx = _Handle("ADX", timeperiod=ind.ADX_PERIOD)
        self._plus_di = _Handle("PLUS_DI", timeperiod=ind.ADX_PERIOD)
        self._minus_di = _Handle("MINUS_DI", timeperiod=ind.ADX_PERIOD)
        self._rsi = _Handle("RSI", timeperiod=ind.RSI_PERIOD)
        f, s, g = ind.MACD_PERIODS
        self._macd = _MultiHandle("MACD", fastperiod=f, slowperiod=s, signalperiod=g)
        self._roc = _Handle("ROC", timeperiod=ind.ROC_PERIOD)
        k, sk, sd = ind.STOCH_PERIODS
        self._stoch = _MultiHandle(
            "STOCH", fastk_period=k, slowk_period=sk, slowk_matype=0, slowd_period=sd, slowd_matype=0
        )
        self._atr = _Handle("ATR", timeperiod=ind.ATR_PERIOD)
        self._natr = _Handle("NATR", timeperiod=ind.ATR_PERIOD)
        self._bbands = _MultiHandle(
            "BBANDS", timeperiod=ind.BB_PERIOD, nbdevup=ind.BB_DEVIATIONS, nbdevdn=ind.BB_DEVIATIONS, matype=0
        )
        self._kc = _MultiHandle("KC", timeperiod=ind.KC_PERIOD, atrperiod=ind.KC_ATR_PERIOD, nbdev=ind.KC_MULTIPLIER)
        self._donchian = _MultiHandle("DONCHIAN", timeperiod=ind.DONCHIAN_PERIOD)
        self._obv = _Handle("OBV")
        self._rvol = _Handle("RVOL", timeperiod=ind.VOLUME_RATIO_PERIOD)
        self._cci = _Handle("CCI", timeperiod=ind.CCI_PERIOD)
        self._mfi = _Handle("MFI", timeperiod=ind.MFI_PERIOD)
        self._willr = _Handle("WILLR", timeperiod=ind.WILLR_PERIOD)
        # Choppiness: SUM(TRANGE) over MAX(high) - MIN(low).
        self._trange = _Handle("TRANGE")
        self._tr_sum = _Handle("SUM", timeperiod=ind.CHOP_PERIOD)
        self._high_max = _Handle("MAX", timeperiod=ind.CHOP_PERIOD)
        self._low_min = _Handle("MIN", timeperiod=ind.CHOP_PERIOD)
        # WaveTrend: EMA chains over the typical price.
        channel, average, signal = ind.WAVETREND_PERIODS
        self._esa = _Handle("EMA", timeperiod=channel)
        self._wt_dev = _Handle("EMA", timeperiod=channel)
        self._wt1 = _Handle("EMA", timeperiod=average)
        self._wt2 = _Handle("SMA", timeperiod=signal)
        # VPIN: stdev of price changes, sums of imbalance and of volume.
        self._dp_sigma = _Handle("STDDEV", timeperiod=ind.VPIN_SIGMA_PERIOD, nbdev=1.0)
        self._imbalance_sum = _Handle("SUM", timeperiod=ind.VPIN_PERIOD)
        self._volume_sum = _Handle("SUM", timeperiod=ind.VPIN_PERIOD)
        # Realized volatility and the close z-score.
        self._rocr = _Handle("ROCR", timeperiod=1)
        self._ln = _Handle("LN")
        self._rv_sum = _Handle("SUM", timeperiod=ind.REALIZED_VOL_PERIOD)
        self._z_mean = _Handle("SMA", timeperiod=ind.ZSCORE_PERIOD)
        self._z_std = _Handle("STDDEV", timeperiod=ind.ZSCORE_PERIOD, nbdev=1.0)

    def feed(self, candles: Iterable[Candle]) -> IndicatorSnapshot | None:
        """Feed a history of closed candles in order (e.g. at start-up); the last snapshot."""
        for candle in candles:
            self.update(candle)
        return self.last

    def update(self, candle: Candle) -> IndicatorSnapshot | None:
        """Feed one closed candle; its snapshot, or None if the candle was rejected."""
        problem = feed_problem(candle, self.symbol, self.timeframe, self._last_open_us)
        if problem is not None:
            self.rejected += 1
            log.warning("%s %s: candle at %d rejected: %s", self.symbol, self.timeframe,
                        candle.open_time_us, problem)
            return None
        self._last_open_us = candle.open_time_us
        self.updates += 1
        h, lo, c, v = candle.high, candle.low, candle.close, candle.volume
        prev_close = self._prev_close
        self._prev_close = c

        macd, macd_signal, macd_hist = self._macd.push(c)
        stoch_k, stoch_d = self._stoch.push(h, lo, c)
        bb_upper, bb_middle, bb_lower = self._bbands.push(c)
        kc_upper, kc_middle, kc_lower = self._kc.push(h, lo, c)
        dc_upper, dc_middle, dc_lower = self._donchian.push(h, lo)
        wt1, wt2 = self._wavetrend(h, lo, c)
        values = IndicatorValues(
            ema_9=self._ema_fast.push(c),
            ema_21=self._ema_mid.push(c),
            ema_50=self._ema_slow.push(c),
            sma_20=self._sma.push(c),
            adx_14=self._adx.push(h, lo, c),
            plus_di_14=self._plus_di.push(h, lo, c),
            minus_di_14=self._minus_di.push(h, lo, c),
            rsi_14=self._rsi.push(c),
            macd=macd,
            macd_signal=macd_signal,
            macd_hist=macd_hist,
            roc_10=self._roc.push(c),
            stoch_k=stoch_k,
            stoch_d=stoch_d,
            atr_14=self._atr.push(h, lo, c),
            natr_14=self._natr.push(h, lo, c),
            bb_upper=bb_upper,
            bb_middle=bb_middle,
            bb_lower=bb_lower,
            bb_width=(bb_upper - bb_lower) / bb_middle if bb_middle != 0.0 else NAN,
            kc_upper=kc_upper,
            kc_middle=kc_middle,
            kc_lower=kc_lower,
            dc_upper=dc_upper,
            dc_middle=dc_middle,
            dc_lower=dc_lower,
            obv=self._obv.push(c, v),
            vwap=self._session_vwap(candle),
            volume_ratio=self._rvol.push(v),
            chop_14=self._choppiness(h, lo, c),
            wt1=wt1,
            wt2=wt2,
            vpin=self._vpin(c, prev_close, v),
            realized_vol=self._realized_vol(c),
            close_zscore=self._zscore(c),
            cci_20=self._cci.push(h, lo, c),
            mfi_14=self._mfi.push(h, lo, c, v),
            willr_14=self._willr.push(h, lo, c),
        )
        self.last = IndicatorSnapshot(self.symbol, self.timeframe, candle.open_time_us, c, values)
        return self.last


    def _session_vwap(self, candle: Candle) -> float:
        session = candle.open_time_us // US_PER_DAY
        args = (candle.high, candle.low, candle.close, candle.volume)
        if session != self._session or self._vwap is None:
            self._session = session
            self._vwap = stream.VWAP(*(np.array([a]) for a in args))
            return self._vwap.value
        return self._vwap.update(*args)

    def _choppiness(self, h: float, lo: float, c: float) -> float:
        true_range = self._trange.push(h, lo, c)
        tr_sum = self._tr_sum.push(true_range) if true_range == true_range else NAN
        price_range = self._high_max.push(h) - self._low_min.push(lo)
        if not price_range > 0.0 or tr_sum != tr_sum:
            return NAN
        return 100.0 * math.log10(tr_sum / price_range) / math.log10(ind.CHOP_PERIOD)

    def _wavetrend(self, h: float, lo: float, c: float) -> tuple[float, float]:
        typical = (h + lo + c) / 3.0  # exactly TA-Lib's TYPPRICE
        esa = self._esa.push(typical)
        if esa != esa:
            return NAN, NAN
        deviation = self._wt_dev.push(abs(typical - esa))
        if deviation != deviation:
            return NAN, NAN
        ci = 0.0 if deviation == 0.0 else (typical - esa) / (0.015 * deviation)
        wt1 = self._wt1.push(ci)
        if wt1 != wt1:
            return NAN, NAN
        return wt1, self._wt2.push(wt1)

    def _vpin(self, c: float, prev_close: float, v: float) -> float:
        volume_sum = self._volume_sum.push(v)
        if prev_close != prev_close:
            return NAN
        change = c - prev_close
        sigma = self._dp_sigma.push(change)
        if sigma != sigma:
            return NAN
        z = change / sigma if sigma > 0.0 else 0.0
        imbalance_sum = self._imbalance_sum.push(v * math.erf(abs(z) / _SQRT2))
        if imbalance_sum != imbalance_sum or not volume_sum > 0.0:
            return NAN
        return imbalance_sum / volume_sum

    def _realized_vol(self, c: float) -> float:
        ratio = self._rocr.push(c)
        if ratio != ratio:
            return NAN
        log_return = self._ln.push(ratio)
        return math.sqrt(self._rv_sum.push(log_return * log_return))

    def _zscore(self, c: float) -> float:
        mean = self._z_mean.push(c)
        std = self._z_std.push(c)
        if std != std:
            return NAN
        return (c - mean) / std if std > 0.0 else 0.0


@dataclass(frozen=True, slots=True)
class MultiTimeframeSnapshot:
    """The indicator sets of one symbol on several timeframes after one source candle.

    ``latest`` maps each timeframe to the snapshot of its last closed candle (a timeframe
    is absent until its first candle closes); ``closed`` holds, in order, the snapshot of
    every candle this source candle closed (two of one timeframe when a gap ended a bucket).
    """

    symbol: str
    open_time_us: int
    latest: dict[str, IndicatorSnapshot]
    closed: tuple[IndicatorSnapshot, ...]


class MultiTimeframeIndicators:
    """One symbol's indicator sets on ``timeframes``, all fed from its closed 1m candles.

    Higher timeframes are resampled with :class:`~triplegain_core.marketdata.timeframes.CandleResampler`
    and each gets its own :class:`IncrementalIndicators`, so the values equal
    :func:`~triplegain_core.analysis.indicators.feature_frame` over the resampled history.
    """

    def __init__(
        self, symbol: str, timeframes: tuple[str, ...] = ANALYSIS_TIMEFRAMES, source: str = "1m"
    ) -> None:
        self.symbol = symbol
        self.source = source
        self.timeframes = timeframes
        self.sets = {tf: IncrementalIndicators(symbol, tf) for tf in timeframes}
        self._resamplers = {tf: CandleResampler(symbol, tf, source) for tf in timeframes if tf != source}
        self._latest: dict[str, IndicatorSnapshot] = {}
        self._last_open_us: int | None = None
        self.rejected = 0

    def update(self, candle: Candle) -> MultiTimeframeSnapshot | None:
        """Feed one closed source candle; None (logged, counted) when it is rejected."""
        problem = feed_problem(candle, self.symbol, self.source, self._last_open_us)
        if problem is not None:
            self.rejected += 1
            log.warning("%s: %s candle at %d rejected: %s", self.symbol, self.source,
                        candle.open_time_us, problem)
            return None
        self._last_open_us = candle.open_time_us
        closed: list[IndicatorSnapshot] = []
        if self.source in self.sets:
            closed.append(self._apply(self.source, candle))
        for tf, resampler in self._resamplers.items():
            closed.extend(self._apply(tf, bar) for bar in resampler.add(candle))
        return MultiTimeframeSnapshot(self.symbol, candle.open_time_us, dict(self._latest), tuple(closed))

    def _apply(self, timeframe: str, candle: Candle) -> IndicatorSnapshot:
        snapshot = self.sets[timeframe].update(candle)
        # The source candle passed feed_problem and resampled bars are built from such
        # candles in order, so the set cannot reject them.
        assert snapshot is not None
        self._latest[timeframe] = snapshot
        return snapshot
