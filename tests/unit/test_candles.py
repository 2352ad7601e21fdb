"""1m candles from trades: against an independent pandas resample, and the real exchange's."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triplegain_core.candles import CandleAggregator, build_candles
from triplegain_core.market import US_PER_MINUTE, Side, Trade
from triplegain_core.market_sources import trades_from_file

T0 = 1_767_571_200_000_000  # a minute boundary


def _trade(symbol: str, ts_us: int, price: float, qty: float = 1.0, trade_id: int = 0) -> Trade:
    return Trade(symbol, trade_id, ts_us, price, qty, Side.BUY)


def _pandas_candles(trades: list[Trade]) -> pd.DataFrame:
    frame = pd.DataFrame(
        [(t.symbol, t.ts_us, t.price, t.qty) for t in trades],
        columns=["symbol", "ts_us", "price", "qty"],
    )
    frame["bucket"] = frame["ts_us"] // US_PER_MINUTE * US_PER_MINUTE
    grouped = frame.groupby(["symbol", "bucket"], sort=True)
    return grouped.agg(open=("price", "first"), high=("price", "max"), low=("price", "min"),
                       close=("price", "last"), volume=("qty", "sum"),
                       trade_count=("price", "count")).reset_index()


_steps = st.lists(
    st.tuples(
        st.sampled_from(["BTC/USDT", "XRP/USDT", "XRP/BTC"]),
        st.integers(min_value=0, max_value=50_000_000),  # time step, up to 50 s
        st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False),
        st.floats(min_value=1e-8, max_value=1e4, allow_nan=False, allow_infinity=False),
    ),
    max_size=200,
)


@settings(max_examples=150, deadline=None)
@given(_steps, st.integers(min_value=0, max_value=US_PER_MINUTE - 1))
def test_aggregator_equals_pandas_resample(steps: list, offset: int) -> None:
    ts, trades = T0 + offset, []
    for i, (symbol, step, price, qty) in enumerate(steps):
        ts += step
        trades.append(_trade(symbol, ts, price, qty, i))
    candles = build_candles(trades)
    expected = _pandas_candles(trades) if trades else None
    assert len(candles) == (0 if expected is None else len(expected))
    if expected is None:
        return
    ours = sorted(candles, key=lambda c: (c.symbol, c.open_time_us))
    for candle, row in zip(ours, expected.itertuples(), strict=True):
        assert (candle.symbol, candle.open_time_us) == (row.symbol, row.bucket)
        assert (candle.open, candle.high, candle.low, candle.close) == (
            row.open, row.high, row.low, row.close)
        assert candle.trade_count == row.trade_count
        # pandas sums with compensation; ours sums in arrival order like the exchange.
        assert candle.volume == pytest.approx(row.volume, rel=1e-12)


def test_add_returns_the_candle_a_later_bucket_closes() -> None:
    aggregator = CandleAggregator()
    assert aggregator.add(_trade("XRP/USDT", T0 + 1, 0.5, 2.0)) == []
    assert aggregator.add(_trade("BTC/USDT", T0 + 2, 60_000.0)) == []
    assert aggregator.add(_trade("XRP/USDT", T0 + 3, 0.7, 1.0)) == []
    assert aggregator.add(_trade("XRP/USDT", T0 + 4, 0.4, 1.0)) == []
    assert [c.symbol for c in aggregator.forming()] == ["XRP/USDT", "BTC/USDT"]
    # Three empty minutes for XRP: no candle for them, the next trade closes the first.
    closed = aggregator.add(_trade("XRP/USDT", T0 + 4 * US_PER_MINUTE, 0.6))
    assert len(closed) == 1
    candle = closed[0]
    assert (candle.open_time_us, candle.open, candle.high, candle.low, candle.close,
            candle.volume, candle.trade_count) == (T0, 0.5, 0.7, 0.4, 0.4, 4.0, 3)
    assert candle.close_time_us == T0 + US_PER_MINUTE
    flushed = aggregator.flush()
    assert {(c.symbol, c.open_time_us) for c in flushed} == {
        ("XRP/USDT", T0 + 4 * US_PER_MINUTE), ("BTC/USDT", T0)}
    assert aggregator.forming() == []


def test_late_trade_is_counted_and_ignored() -> None:
    aggregator = CandleAggregator()
    aggregator.add(_trade("XRP/USDT", T0 + US_PER_MINUTE, 0.5))
    before = aggregator.forming()
    assert aggregator.add(_trade("XRP/USDT", T0 + 10, 9.9)) == []
    assert aggregator.late_trades == 1
    assert aggregator.forming() == before


def test_bucket_edges_are_half_open() -> None:
    candles = build_candles([_trade("A", T0 + US_PER_MINUTE - 1, 1.0),
                             _trade("A", T0 + US_PER_MINUTE, 2.0)])
    assert [(c.open_time_us, c.close) for c in candles] == [(T0, 1.0), (T0 + US_PER_MINUTE, 2.0)]


def test_unknown_timeframe_is_refused() -> None:
    with pytest.raises(ValueError, match="timeframe"):
        CandleAggregator("7m")


def test_real_trades_give_the_exchange_candles_exactly(shared_data: Path) -> None:
    """Binance's own XRP/ETH 1m candles, all 2,469, rebuilt from its trades, exact floats."""
    trades = trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", "XRP/ETH")
    candles = build_candles(trades)
    exchange = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet")
    assert len(candles) == len(exchange) == 2469
    ours = [(c.open_time_us, c.open, c.high, c.low, c.close, c.volume) for c in candles]
    theirs = list(zip(
        exchange["ts"].dt.as_unit("us").astype("int64").tolist(), exchange["open"].tolist(),
        exchange["high"].tolist(), exchange["low"].tolist(), exchange["close"].tolist(),
        exchange["volume"].tolist(), strict=True,
    ))
    assert ours == theirs
