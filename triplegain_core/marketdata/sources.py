"""Replayable trade streams: real trade files, trades laid inside real candles, a simulator.

Every source yields :class:`Trade` objects in time order (per symbol, and across symbols for
the simulator), ready for the replay exchange or for :func:`build_candles`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from triplegain_core.model.market import (
    TRADED_SYMBOLS,
    US_PER_MINUTE,
    US_PER_SECOND,
    Side,
    Trade,
)


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    raise ValueError(f"{path}: expected a .parquet or .csv file")


def _tick_rule_sides(prices: Sequence[float]) -> list[Side]:
    """Synthesized taker sides: an uptick is a buy, a downtick a sell, no change repeats."""
    sides, side, previous = [], Side.BUY, None
    for price in prices:
        if previous is not None and price != previous:
            side = Side.BUY if price > previous else Side.SELL
        sides.append(side)
        previous = price
    return sides


def trades_from_file(path: str | Path, symbol: str) -> Iterator[Trade]:
    """Trades of a file standing for ``symbol``, in time order.

    Parquet with ``ts_ms, trade_id, side, price, amount`` (Binance style) or csv with
    ``ts_s, price, amount`` (Kraken style). Trade ids missing from the file are numbered from 1
    in file order; missing sides come from the tick rule.
    """
    path = Path(path)
    frame = _read_table(path)
    if "ts_ms" in frame:
        ts_us = (frame["ts_ms"].astype("int64") * 1000).tolist()
    elif "ts_s" in frame:
        ts_us = (frame["ts_s"].astype("float64") * US_PER_SECOND).round().astype("int64").tolist()
    else:
        raise ValueError(f"{path}: needs a ts_ms or ts_s column, has {list(frame.columns)}")
    prices = frame["price"].astype("float64").tolist()
    amounts = frame["amount"].astype("float64").tolist()
    ids = (frame["trade_id"].astype("int64").tolist() if "trade_id" in frame
           else range(1, len(frame) + 1))
    sides = ([Side(s) for s in frame["side"]] if "side" in frame else _tick_rule_sides(prices))
    rows = sorted(zip(ts_us, ids, prices, amounts, sides, strict=True), key=lambda row: row[0])  # stable
    for ts, trade_id, price, amount, side in rows:
        yield Trade(symbol, int(trade_id), int(ts), price, amount, side)


def trades_from_candles(
    path: str | Path, symbol: str, trades_per_candle: int = 4
) -> Iterator[Trade]:
    """Trades laid inside each candle of a file (``ts, open, high, low, close, volume``).

    Each candle becomes ``trades_per_candle`` (>= 4) trades, evenly spaced inside its interval,
    walking open -> low -> high -> close when the candle closes up (else open -> high -> low ->
    close); extra trades interpolate along that path. The volume is split evenly, the last trade
    taking the remainder, so rebuilding the candles gives back the file's OHLCV exactly.
    Candles with no volume are skipped: no trade printed, so no candle would exist.
    """
    if trades_per_candle < 4:
        raise ValueError("trades_per_candle must be >= 4 to print open, high, low and close")
    frame = _read_table(Path(path))
    opens_us = pd.to_datetime(frame["ts"], utc=True).dt.as_unit("us").astype("int64").tolist()
    gaps = np.diff(opens_us)
    interval_us = int(gaps[gaps > 0].min()) if (gaps > 0).any() else US_PER_MINUTE
    step_us = interval_us // (trades_per_candle + 1)
    trade_id = 0
    for open_us, o, h, low, c, volume in zip(
        opens_us, frame["open"].tolist(), frame["high"].tolist(), frame["low"].tolist(),
        frame["close"].tolist(), frame["volume"].tolist(), strict=True,
    ):
        if not volume > 0:
            continue
        path_prices = _candle_path([o, low, h, c] if c >= o else [o, h, low, c],
                                   trades_per_candle, low, h)
        qty = volume / trades_per_candle
        spent = 0.0
        for i, price in enumerate(path_prices):
            last = i == trades_per_candle - 1
            # The remainder is exact (Sterbenz): spent >= volume / 2 when it is taken.
            amount = volume - spent if last else qty
            spent += amount
            trade_id += 1
            previous = path_prices[i - 1] if i else o
            side = Side.SELL if price < previous else Side.BUY
            yield Trade(symbol, trade_id, open_us + (i + 1) * step_us, price, amount, side)


def _candle_path(anchors: list[float], count: int, low: float, high: float) -> list[float]:
    """``count`` prices along the anchors' polyline, anchors included, clamped to [low, high]."""
    positions = np.linspace(0, len(anchors) - 1, count)
    prices = []
    for position in positions:
        index = min(int(position), len(anchors) - 2)
        fraction = position - index
        start, end = anchors[index], anchors[index + 1]
        if fraction == 0.0:
            price = start
        elif fraction == 1.0:
            price = end
        else:
            price = min(max(start + (end - start) * fraction, low), high)
        prices.append(float(price))
    return prices


def merge_by_time(*streams: Iterable[Trade]) -> Iterator[Trade]:
    """Merge time-ordered trade streams into one (ties keep the streams' order)."""
    return heapq.merge(*streams, key=lambda trade: trade.ts_us)


@dataclass(frozen=True, slots=True)
class Regime:
    """One stretch of simulated market: drift and volatility per minute, pull to its start."""

    name: str
    drift_per_min: float
    vol_scale: float
    mean_reversion_per_min: float
    activity: float


# Regimes the simulator switches between. Trends drift ~±1.2 %/hour; the range pulls the
# price back toward where the stretch began; the volatile one triples volatility and trading.
REGIMES = (
    Regime("trend_up", 0.0002, 1.0, 0.0, 1.0),
    Regime("trend_down", -0.0002, 1.0, 0.0, 1.0),
    Regime("range", 0.0, 0.6, 0.05, 0.8),
    Regime("volatile", 0.0, 3.0, 0.0, 1.6),
)


class MarketSimulator:
    """A seeded market for BTC/USDT, XRP/USDT and XRP/BTC; iterating yields its trades.

    Model: BTC/USDT and XRP/USDT follow geometric random walks stepped every second, their
    log-returns correlated (``correlation``, 0.6 by default, XRP ~1.6x BTC's volatility). A
    shared regime, redrawn every 30-120 minutes, sets the drift (trend up or down), pulls prices
    toward the stretch's starting level (range), or scales volatility and activity (volatile).
    BTC/USDT prints on a 0.1 tick, XRP/USDT on 0.00001; XRP/BTC trades at exactly
    XRP/USDT / BTC/USDT of the same second, so the cross rate never offers a free arbitrage.
    Each symbol trades 5-15 times a minute (more when volatile), at least once every minute,
    with random taker sides, lognormal sizes and its own increasing trade ids. The same seed
    gives the same trades, for any subset of ``symbols``.
    """

    BTC_START = 60_000.0
    XRP_START = 0.55
    BTC_VOL_PER_MIN = 0.0006
    XRP_VOL_PER_MIN = 0.001
    # Median trade sizes (base currency) for the lognormal quantities.
    MEDIAN_QTY: ClassVar[Mapping[str, float]] = {"BTC/USDT": 0.02, "XRP/USDT": 400.0, "XRP/BTC": 250.0}

    def __init__(
        self,
        seed: int,
        start_us: int,
        duration_s: int,
        symbols: Sequence[str] = TRADED_SYMBOLS,
        correlation: float = 0.6,
    ) -> None:
        unknown = set(symbols) - set(TRADED_SYMBOLS)
        if unknown:
            raise ValueError(f"the simulator knows {list(TRADED_SYMBOLS)}, not {sorted(unknown)}")
        if start_us % US_PER_MINUTE:
            raise ValueError("start_us must fall on a minute boundary")
        if duration_s <= 0:
            raise ValueError("duration_s must be positive")
        if not -1.0 < correlation < 1.0:
            raise ValueError("correlation must lie in (-1, 1)")
        self.seed = seed
        self.start_us = start_us
        self.duration_s = duration_s
        self.symbols = tuple(symbols)
        self.correlation = correlation

    def __iter__(self) -> Iterator[Trade]:
        return self._trades()

    def _trades(self) -> Iterator[Trade]:
        rng = np.random.default_rng(self.seed)
        end_us = self.start_us + self.duration_s * US_PER_SECOND
        minutes = math.ceil(self.duration_s / 60)
        log_btc, log_xrp = math.log(self.BTC_START), math.log(self.XRP_START)
        next_id = dict.fromkeys(TRADED_SYMBOLS, 1)
        wanted = set(self.symbols)
        regime, regime_left, anchor = REGIMES[0], 0, (log_btc, log_xrp)
        mix = math.sqrt(1.0 - self.correlation**2)
        for minute in range(minutes):
            if regime_left == 0:
                regime = REGIMES[int(rng.integers(len(REGIMES)))]
                regime_left = int(rng.integers(30, 121))
                anchor = (log_btc, log_xrp)
            regime_left -= 1
            # 60 one-second steps of correlated shocks, plus drift and pull to the anchor.
            shocks = rng.standard_normal((2, 60)) * math.sqrt(1 / 60) * regime.vol_scale
            btc_steps = self.BTC_VOL_PER_MIN * shocks[0]
            xrp_steps = self.XRP_VOL_PER_MIN * (self.correlation * shocks[0] + mix * shocks[1])
            pull_btc = regime.mean_reversion_per_min * (anchor[0] - log_btc)
            pull_xrp = regime.mean_reversion_per_min * (anchor[1] - log_xrp)
            btc_path = log_btc + np.cumsum(btc_steps + (regime.drift_per_min + pull_btc) / 60)
            xrp_path = log_xrp + np.cumsum(xrp_steps + (regime.drift_per_min * 1.3 + pull_xrp) / 60)
            log_btc, log_xrp = float(btc_path[-1]), float(xrp_path[-1])
            btc_prices = np.round(np.exp(btc_path), 1)
            xrp_prices = np.round(np.exp(xrp_path), 5)

            minute_start = self.start_us + minute * US_PER_MINUTE
            span_us = min(US_PER_MINUTE, end_us - minute_start)
            low, high = round(5 * regime.activity), round(15 * regime.activity) + 1
            batch: list[tuple[int, int, str, float, float, Side]] = []
            for order, symbol in enumerate(TRADED_SYMBOLS):
                count = int(rng.integers(low, high))
                offsets = np.sort(rng.integers(0, span_us, count))
                buys = rng.random(count) < 0.5
                sizes = rng.lognormal(math.log(self.MEDIAN_QTY[symbol]), 0.9, count)
                if symbol not in wanted:
                    continue  # the draws above still happen: same market for any subset
                for offset, buy, size in zip(offsets.tolist(), buys.tolist(), sizes.tolist(), strict=True):
                    second = offset // US_PER_SECOND
                    btc, xrp = float(btc_prices[second]), float(xrp_prices[second])
                    price = (btc if symbol == "BTC/USDT" else
                             xrp if symbol == "XRP/USDT" else xrp / btc)
                    batch.append((minute_start + offset, order, symbol, price,
                                  round(size, 8) or 1e-8, Side.BUY if buy else Side.SELL))
            batch.sort(key=lambda row: (row[0], row[1]))
            for ts_us, _, symbol, price, qty, side in batch:
                trade_id = next_id[symbol]
                next_id[symbol] = trade_id + 1
                yield Trade(symbol, trade_id, ts_us, price, qty, side)
