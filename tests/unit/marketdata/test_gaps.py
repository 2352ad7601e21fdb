"""Planning a gap repair: the missed interval, its minutes, and the merged candles."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triplegain_core.marketdata.candles import build_candles
from triplegain_core.marketdata.gaps import (
    MissedInterval,
    interval_after_outage,
    merge_trades,
    missed_by_trade_ids,
    repair_span,
    repaired_candles,
)
from triplegain_core.marketdata.sources import MarketSimulator, trades_from_file
from triplegain_core.model.market import TIMEFRAMES, US_PER_MINUTE, US_PER_SECOND, Side, Trade

T0 = 1_767_571_200 * US_PER_SECOND  # 2026-01-05 00:00 UTC


def _trade(trade_id: int, ts_us: int, price: float = 1.0, symbol: str = "XRP/USDT") -> Trade:
    return Trade(symbol, trade_id, ts_us, price, 1.0, Side.BUY)


def test_missed_interval_covers_whole_minutes() -> None:
    interval = MissedInterval("XRP/USDT", T0 + 61 * US_PER_SECOND, T0 + 185 * US_PER_SECOND)
    assert interval.minutes == (T0 + US_PER_MINUTE, T0 + 4 * US_PER_MINUTE)
    # An end on a minute boundary is exclusive: that minute is not touched.
    exact = MissedInterval("XRP/USDT", T0, T0 + 2 * US_PER_MINUTE)
    assert exact.minutes == (T0, T0 + 2 * US_PER_MINUTE)


def test_missed_interval_rejects_empty_spans() -> None:
    with pytest.raises(ValueError, match="empty missed interval"):
        MissedInterval("XRP/USDT", T0, T0)


def test_interval_after_outage() -> None:
    assert interval_after_outage("BTC/USDT", T0, T0 + 5, fallback_us=0) == MissedInterval(
        "BTC/USDT", T0 + 1, T0 + 5)
    assert interval_after_outage("BTC/USDT", None, T0 + 5, fallback_us=T0) == MissedInterval(
        "BTC/USDT", T0, T0 + 5)
    assert interval_after_outage("BTC/USDT", T0 + 5, T0 + 5, fallback_us=0) is None


def test_missed_by_trade_ids() -> None:
    assert missed_by_trade_ids(_trade(7, T0), _trade(8, T0 + 10)) is None
    assert missed_by_trade_ids(_trade(7, T0), _trade(11, T0 + 10)) == MissedInterval(
        "XRP/USDT", T0, T0 + 11)
    with pytest.raises(ValueError, match="two symbols"):
        missed_by_trade_ids(_trade(7, T0), _trade(9, T0 + 10, symbol="BTC/USDT"))


def test_merge_trades_dedupes_and_orders() -> None:
    a, b, c = _trade(1, T0), _trade(2, T0 + 5), _trade(3, T0 + 5)
    assert merge_trades([c, a], [b, a, c]) == [a, b, c]


@given(
    seed=st.integers(0, 2**16),
    hole_start_s=st.integers(0, 1700),
    hole_length_s=st.integers(1, 600),
    overlap_s=st.integers(0, 120),
)
def test_repair_gives_the_candles_of_the_uninterrupted_stream(
    seed: int, hole_start_s: int, hole_length_s: int, overlap_s: int
) -> None:
    trades = list(MarketSimulator(seed, T0, 1800, symbols=["XRP/USDT"]))
    hole = (T0 + hole_start_s * US_PER_SECOND,
            T0 + (hole_start_s + hole_length_s) * US_PER_SECOND)
    stored = [t for t in trades if not hole[0] <= t.ts_us < hole[1]]
    interval = MissedInterval("XRP/USDT", *hole)
    first, end = interval.minutes
    # REST brings back the whole minutes, overlapping what is stored by a little more.
    fetched = [t for t in trades if first - overlap_s * US_PER_SECOND <= t.ts_us < end]

    repaired = repaired_candles(interval, [*stored, *fetched], ("1m",))

    expected = [c for c in build_candles(trades) if first <= c.open_time_us < end]
    assert repaired == expected


def test_repair_rebuilds_every_touched_bucket_of_every_timeframe() -> None:
    trades = list(MarketSimulator(4, T0, 3 * 3600, symbols=["BTC/USDT"]))
    interval = MissedInterval("BTC/USDT", T0 + 62 * US_PER_MINUTE, T0 + 64 * US_PER_MINUTE)
    stored = [t for t in trades if not interval.from_us <= t.ts_us < interval.to_us]
    first, end = repair_span(interval, TIMEFRAMES)
    assert (first, end) == (T0, T0 + 1440 * US_PER_MINUTE)  # the day of the 1d candle
    fetched = [t for t in trades if interval.minutes[0] <= t.ts_us < interval.minutes[1]]

    repaired = repaired_candles(interval, [*stored, *fetched], TIMEFRAMES)

    everything = build_candles(trades, TIMEFRAMES)
    touched = {(c.timeframe, c.open_time_us) for c in repaired}
    assert touched == {("1m", T0 + 62 * US_PER_MINUTE), ("1m", T0 + 63 * US_PER_MINUTE),
                       ("5m", T0 + 60 * US_PER_MINUTE), ("15m", T0 + 60 * US_PER_MINUTE),
                       ("1h", T0 + 60 * US_PER_MINUTE), ("1d", T0)}
    assert repaired == [c for c in everything if (c.timeframe, c.open_time_us) in touched]


def test_repair_of_a_quiet_market_gives_its_quiet_candles(shared_data: Path) -> None:
    """Real XRP/ETH trades (minutes without trades among them), a hole across quiet minutes:
    the rebuilt buckets, quiet ones included, are those of the uninterrupted stream."""
    trades = list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", "XRP/USDT"))
    everything = build_candles(trades, TIMEFRAMES)
    quiet_hours = {c.open_time_us for c in everything if c.timeframe == "1h"
                   and sum(m.quiet for m in everything if m.timeframe == "1m"
                           and c.open_time_us <= m.open_time_us < c.close_time_us) >= 20}
    hour = sorted(quiet_hours)[len(quiet_hours) // 2]  # a quiet hour inside the run
    interval = MissedInterval("XRP/USDT", hour + 5 * US_PER_MINUTE, hour + 50 * US_PER_MINUTE)
    stored = [t for t in trades if not interval.from_us <= t.ts_us < interval.to_us]
    first, end = interval.minutes
    fetched = [t for t in trades if first <= t.ts_us < end]

    repaired = repaired_candles(interval, [*stored, *fetched], TIMEFRAMES)

    touched = {(c.timeframe, c.open_time_us) for c in repaired}
    assert sum(1 for tf, _ in touched if tf == "1m") == 45
    assert sum(c.quiet for c in repaired if c.timeframe == "1m") >= 10
    assert repaired == [c for c in everything if (c.timeframe, c.open_time_us) in touched]
