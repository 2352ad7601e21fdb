"""Candles of every timeframe from trades: against an independent pandas resample, and the real
exchange's own candles; duplicates, late trades and the aggregator's bounded memory."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from triplegain_core.marketdata.candles import QUIET_EVIDENCE_LAG_US, CandleAggregator, build_candles
from triplegain_core.marketdata.sources import trades_from_file
from triplegain_core.marketdata.timeframes import CandleResampler, resample_candles
from triplegain_core.model.market import (
    TIMEFRAME_US,
    TIMEFRAMES,
    US_PER_DAY,
    US_PER_MINUTE,
    Candle,
    Side,
    Trade,
)

T0 = 1_767_571_200_000_000  # 2026-01-05 00:00 UTC, a day boundary
SYMBOLS = ["BTC/USDT", "XRP/USDT", "XRP/BTC"]
_PANDAS_RULE = {"1m": "1min", "5m": "5min", "15m": "15min", "1h": "1h", "1d": "1D"}


def _trade(symbol: str, ts_us: int, price: float, qty: float = 1.0, trade_id: int = 0) -> Trade:
    return Trade(symbol, trade_id, ts_us, price, qty, Side.BUY)


def _pandas_candles(trades: list[Trade], timeframe: str, until_us: int | None = None
                    ) -> pd.DataFrame:
    """The reference: deduplicate (first arrival wins), order by (time, id), resample. Every
    bucket from a symbol's first trade to its last (to the one before ``until_us``'s when
    later) has a candle: those without a trade are quiet, flat at the close before them."""
    frame = pd.DataFrame(
        [(t.symbol, t.trade_id, t.ts_us, t.price, t.qty) for t in trades],
        columns=["symbol", "trade_id", "ts_us", "price", "qty"],
    ).drop_duplicates(["symbol", "trade_id"], keep="first")
    frame = frame.sort_values(["ts_us", "trade_id"], kind="stable")
    frame.index = pd.to_datetime(frame["ts_us"], unit="us")  # naive, read as UTC
    rule = _PANDAS_RULE[timeframe]
    pieces = []
    for symbol, trades_of in frame.groupby("symbol"):
        bars = trades_of.resample(rule, origin="epoch", closed="left", label="left").agg(
            {"price": ["first", "max", "min", "last", "count"], "qty": "sum"})
        bars.columns = ["open", "high", "low", "close", "trade_count", "volume"]
        if until_us is not None:
            last_bucket = pd.Timestamp(until_us, unit="us").floor(rule) - pd.Timedelta(rule)
            if last_bucket > bars.index[-1]:
                bars = bars.reindex(pd.date_range(bars.index[0], last_bucket, freq=rule))
                bars["trade_count"] = bars["trade_count"].fillna(0)
                bars["volume"] = bars["volume"].fillna(0.0)
        bars["close"] = bars["close"].ffill()
        for column in ("open", "high", "low"):
            bars[column] = bars[column].fillna(bars["close"])
        bars["symbol"] = symbol
        pieces.append(bars)
    bars = pd.concat(pieces).rename_axis("ts_us").reset_index()
    bars["open_time_us"] = bars["ts_us"].astype("datetime64[us]").astype("int64")
    return bars.sort_values(["symbol", "open_time_us"]).reset_index(drop=True)


def _assert_equal_to_reference(candles: list[Candle], trades: list[Trade],
                               until_us: int | None = None) -> None:
    for timeframe in TIMEFRAMES:
        ours = [c for c in candles if c.timeframe == timeframe]
        expected = _pandas_candles(trades, timeframe, until_us) if trades else pd.DataFrame()
        assert len(ours) == len(expected), timeframe
        for candle, row in zip(ours, expected.itertuples(), strict=True):
            assert (candle.symbol, candle.open_time_us) == (row.symbol, row.open_time_us)
            assert (candle.open, candle.high, candle.low, candle.close) == (
                row.open, row.high, row.low, row.close)
            assert candle.trade_count == row.trade_count
            # pandas sums with compensation; ours in arrival order, like the exchange.
            assert candle.volume == pytest.approx(row.volume, rel=1e-9)


_steps = st.lists(
    st.tuples(
        st.sampled_from(SYMBOLS),
        st.one_of(  # ties, seconds apart, now and then hours (so 1h and 1d buckets turn too)
            st.just(0),
            st.integers(min_value=0, max_value=20_000_000),
            st.integers(min_value=0, max_value=7 * 3600 * 1_000_000),
        ),
        st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False),
        st.floats(min_value=1e-8, max_value=1e4, allow_nan=False, allow_infinity=False),
        st.floats(min_value=0.0, max_value=0.999),  # arrival delay, as a share of the horizon
        st.booleans(),  # delivered twice
    ),
    max_size=80,
)


@settings(max_examples=100, deadline=None)
# A symbol first seen after the feed's time passed its quiet minutes still gets them.
@example(steps=[("BTC/USDT", 0, 1.0, 1.0, 0.0, False), ("XRP/USDT", 0, 1.0, 1.0, 0.875, False),
                ("BTC/USDT", 126_062_482, 1.0, 1.0, 0.0, False)],
         offset=533_937_518, horizon_us=144_071_410)
@given(_steps, st.integers(min_value=0, max_value=US_PER_DAY - 1),
       st.integers(min_value=US_PER_MINUTE, max_value=30 * US_PER_MINUTE))
def test_every_timeframe_equals_a_pandas_resample_of_the_deduplicated_trades(
    steps: list, offset: int, horizon_us: int
) -> None:
    """Trades arrive late (within the horizon) and some twice; the final candles must not care."""
    ts, arrivals, next_id = T0 + offset, [], dict.fromkeys(SYMBOLS, 1)
    for symbol, step, price, qty, delay, twice in steps:
        ts += step
        trade = _trade(symbol, ts, price, qty, next_id[symbol])
        next_id[symbol] += 1
        # Arriving in order of (ts + delay) keeps every trade within the horizon of the newest.
        arrivals.append((ts + int(delay * horizon_us), len(arrivals), trade))
        if twice:
            arrivals.append((ts + int((0.999 - delay) * horizon_us), len(arrivals), trade))
    arrivals.sort(key=lambda a: a[:2])
    stream = [trade for _, _, trade in arrivals]

    aggregator = CandleAggregator(TIMEFRAMES, lateness_horizon_us=horizon_us)
    latest: dict[tuple[str, str, int], Candle] = {}
    for trade in stream:
        for candle in aggregator.add(trade):
            latest[(candle.timeframe, candle.symbol, candle.open_time_us)] = candle
    for candle in aggregator.flush():
        latest[(candle.timeframe, candle.symbol, candle.open_time_us)] = candle

    assert aggregator.late_trades == 0
    distinct = {(t.symbol, t.trade_id) for t in stream}
    assert aggregator.duplicate_trades == len(stream) - len(distinct)
    candles = sorted(latest.values(), key=lambda c: (c.timeframe, c.symbol, c.open_time_us))
    _assert_equal_to_reference(candles, stream)
    # As one feed, a symbol's buckets that end before another's later trade are quiet too.
    whole = build_candles(stream, TIMEFRAMES, lateness_horizon_us=horizon_us)
    market_us = max(t.ts_us for t in stream) - QUIET_EVIDENCE_LAG_US if stream else None
    _assert_equal_to_reference(
        sorted(whole, key=lambda c: (c.timeframe, c.symbol, c.open_time_us)), stream, market_us)


def test_add_returns_the_candle_a_later_bucket_closes() -> None:
    aggregator = CandleAggregator()
    assert aggregator.add(_trade("XRP/USDT", T0 + 1, 0.5, 2.0, 1)) == []
    assert aggregator.add(_trade("BTC/USDT", T0 + 2, 60_000.0, 1.0, 1)) == []
    assert aggregator.add(_trade("XRP/USDT", T0 + 3, 0.7, 1.0, 2)) == []
    assert aggregator.add(_trade("XRP/USDT", T0 + 4, 0.4, 1.0, 3)) == []
    assert [c.symbol for c in aggregator.forming()] == ["XRP/USDT", "BTC/USDT"]
    # Three quiet minutes for XRP: the next trade closes the first and proves them quiet.
    closed = aggregator.add(_trade("XRP/USDT", T0 + 4 * US_PER_MINUTE, 0.6, 1.0, 4))
    assert len(closed) == 4
    candle = closed[0]
    assert (candle.open_time_us, candle.open, candle.high, candle.low, candle.close,
            candle.volume, candle.trade_count) == (T0, 0.5, 0.7, 0.4, 0.4, 4.0, 3)
    assert candle.close_time_us == T0 + US_PER_MINUTE
    assert closed[1:] == [Candle("XRP/USDT", "1m", T0 + m * US_PER_MINUTE, 0.4, 0.4, 0.4, 0.4,
                                 0.0, 0) for m in (1, 2, 3)]
    flushed = aggregator.flush()
    assert {(c.symbol, c.open_time_us) for c in flushed} == {
        ("XRP/USDT", T0 + 4 * US_PER_MINUTE), ("BTC/USDT", T0)}
    assert aggregator.forming() == []


def test_higher_timeframes_close_with_their_own_buckets() -> None:
    aggregator = CandleAggregator(("1h", "1m", "5m"))
    assert aggregator.timeframes == ("1m", "5m", "1h")
    aggregator.add(_trade("XRP/USDT", T0 + 10, 1.0, 1.0, 1))
    aggregator.add(_trade("XRP/USDT", T0 + 4 * US_PER_MINUTE, 3.0, 1.0, 2))
    closed = aggregator.add(_trade("XRP/USDT", T0 + 6 * US_PER_MINUTE, 2.0, 1.0, 3))
    assert [(c.timeframe, c.open_time_us, c.close, c.trade_count) for c in closed] == [
        ("1m", T0 + 4 * US_PER_MINUTE, 3.0, 1), ("1m", T0 + 5 * US_PER_MINUTE, 3.0, 0),
        ("5m", T0, 3.0, 2)]
    forming = {c.timeframe: c for c in aggregator.forming()}
    assert forming["1h"] == Candle("XRP/USDT", "1h", T0, 1.0, 3.0, 1.0, 2.0, 3.0, 3)
    assert forming["5m"].open_time_us == T0 + 5 * US_PER_MINUTE


def test_late_trade_within_the_horizon_corrects_and_reemits_its_candles() -> None:
    aggregator = CandleAggregator(("1m", "5m"), lateness_horizon_us=2 * US_PER_MINUTE)
    aggregator.add(_trade("XRP/USDT", T0 + 5_000_000, 1.0, 1.0, 10))
    aggregator.add(_trade("XRP/USDT", T0 + 50_000_000, 1.1, 1.0, 12))
    (closed,) = aggregator.add(_trade("XRP/USDT", T0 + US_PER_MINUTE + 1, 1.2, 1.0, 13))
    assert (closed.open, closed.close, closed.trade_count) == (1.0, 1.1, 2)
    # Trade 11 printed between 10 and 12 but arrives after 13: the closed 1m candle is
    # emitted again, corrected; the forming 5m candle just absorbs it.
    corrected = aggregator.add(_trade("XRP/USDT", T0 + 20_000_000, 0.9, 2.0, 11))
    assert corrected == [Candle("XRP/USDT", "1m", T0, 1.0, 1.1, 0.9, 1.1, 4.0, 3)]
    assert aggregator.corrections == 1
    # An earlier trade than the open becomes the open; a minute that had no trade gets one.
    assert aggregator.add(_trade("XRP/USDT", T0 + 1, 0.8, 1.0, 9))[0].open == 0.8
    assert aggregator.add(_trade("XRP/USDT", T0 - 30_000_000, 0.7, 1.0, 8)) == [
        Candle("XRP/USDT", "1m", T0 - US_PER_MINUTE, 0.7, 0.7, 0.7, 0.7, 1.0, 1),
        Candle("XRP/USDT", "5m", T0 - 5 * US_PER_MINUTE, 0.7, 0.7, 0.7, 0.7, 1.0, 1),
    ]
    assert aggregator.late_trades == 0
    five = next(c for c in aggregator.forming() if c.timeframe == "5m")
    assert (five.open, five.low, five.trade_count) == (0.8, 0.8, 5)


def test_trade_beyond_the_horizon_is_counted_and_applied_nowhere() -> None:
    aggregator = CandleAggregator(lateness_horizon_us=US_PER_MINUTE)
    aggregator.add(_trade("XRP/USDT", T0, 0.5, 1.0, 1))
    aggregator.add(_trade("XRP/USDT", T0 + 2 * US_PER_MINUTE, 0.5, 1.0, 2))
    before = aggregator.forming()
    assert aggregator.add(_trade("XRP/USDT", T0 + 10, 9.9, 1.0, 3)) == []
    assert aggregator.late_trades == 1
    assert aggregator.forming() == before
    # Exactly at the horizon is still in time.
    assert len(aggregator.add(_trade("XRP/USDT", T0 + US_PER_MINUTE, 0.6, 1.0, 4))) == 1


def test_duplicate_trade_ids_are_counted_and_ignored() -> None:
    aggregator = CandleAggregator()
    trades = [_trade("XRP/USDT", T0 + i, 0.5 + i / 100, 1.0, i) for i in range(5)]
    for trade in trades + trades[1:3]:
        aggregator.add(trade)
    aggregator.add(_trade("XRP/BTC", T0 + 9, 1.0, 1.0, 2))  # ids are per symbol
    assert aggregator.duplicate_trades == 2
    assert {c.symbol: c.trade_count for c in aggregator.forming()} == {"XRP/USDT": 5, "XRP/BTC": 1}


def test_memory_stays_bounded_and_a_forgotten_id_is_never_counted_twice() -> None:
    window = 50  # 100 s of trades, less than the horizon
    aggregator = CandleAggregator(TIMEFRAMES, lateness_horizon_us=3 * US_PER_MINUTE,
                                  trade_id_window=window)
    trades = [_trade("XRP/USDT", T0 + i * 2_000_000, 1.0, 1.0, i) for i in range(20_000)]
    for trade in trades:
        aggregator.add(trade)
    footprint = aggregator.footprint()
    assert footprint.trade_ids == window
    # 1m: the 3-minute horizon plus the forming bucket; one or two of each higher timeframe.
    assert footprint.buckets <= 5 + 2 + 2 + 2 + 2
    # Within the horizon but older than every remembered id: may be a duplicate, so not applied.
    before = aggregator.forming()
    aggregator.add(trades[-window - 1])
    assert (aggregator.late_trades, aggregator.duplicate_trades) == (1, 0)
    aggregator.add(trades[-window])
    assert (aggregator.late_trades, aggregator.duplicate_trades) == (1, 1)
    assert aggregator.forming() == before


def test_bucket_edges_are_half_open() -> None:
    candles = build_candles([_trade("A", T0 + US_PER_MINUTE - 1, 1.0, 1.0, 1),
                             _trade("A", T0 + US_PER_MINUTE, 2.0, 1.0, 2)])
    assert [(c.open_time_us, c.close) for c in candles] == [(T0, 1.0), (T0 + US_PER_MINUTE, 2.0)]
    daily = build_candles([_trade("A", T0 - 1, 1.0, 1.0, 1), _trade("A", T0, 2.0, 1.0, 2)], "1d")
    assert [c.open_time_us for c in daily] == [T0 - US_PER_DAY, T0]
    before_1970 = build_candles([_trade("A", -1, 1.0, 1.0, 1), _trade("A", 0, 2.0, 1.0, 2)])
    assert [(c.open_time_us, c.close) for c in before_1970] == [(-US_PER_MINUTE, 1.0), (0, 2.0)]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="timeframe"):
        CandleAggregator("7m")
    with pytest.raises(ValueError, match="repeat"):
        CandleAggregator(("1m", "1m"))
    with pytest.raises(ValueError, match="horizon"):
        CandleAggregator(lateness_horizon_us=-1)
    with pytest.raises(ValueError, match="window"):
        CandleAggregator(trade_id_window=0)
    assert set(TIMEFRAME_US) == {"1m", "5m", "15m", "1h", "1d"}


@pytest.mark.parametrize("timeframe", ["1m", "5m"])
def test_real_trades_give_the_exchange_candles_exactly(shared_data: Path, timeframe: str) -> None:
    """Binance's own XRP/ETH 1m (2,469) and 5m (706) candles, rebuilt from its trades, exactly;
    the quiet buckets between them (Binance's file leaves them out) are flat at the close
    before them, with no volume, so the series has no hole."""
    trades = list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", "XRP/ETH"))
    aggregator = CandleAggregator(TIMEFRAMES)
    for trade in trades:
        aggregator.add(trade)
    counters = (aggregator.late_trades, aggregator.duplicate_trades, aggregator.corrections)
    assert counters == (0, 0, 0)
    candles = [c for c in build_candles(trades, TIMEFRAMES) if c.timeframe == timeframe]
    span = TIMEFRAME_US[timeframe]
    assert [c.open_time_us for c in candles] == list(range(
        candles[0].open_time_us, candles[-1].open_time_us + span, span))
    assert len(candles) == {"1m": 3560, "5m": 712}[timeframe]
    exchange = pd.read_parquet(shared_data / f"binance_xrp-eth_{timeframe}.parquet")
    traded = [c for c in candles if c.trade_count]
    assert len(traded) == len(exchange) == {"1m": 2469, "5m": 706}[timeframe]
    ours = [(c.open_time_us, c.open, c.high, c.low, c.close, c.volume) for c in traded]
    theirs = list(zip(
        exchange["ts"].dt.as_unit("us").astype("int64").tolist(), exchange["open"].tolist(),
        exchange["high"].tolist(), exchange["low"].tolist(), exchange["close"].tolist(),
        exchange["volume"].tolist(), strict=True,
    ))
    assert ours == theirs
    for before, candle in itertools.pairwise(candles):
        if not candle.trade_count:
            assert (candle.open, candle.high, candle.low, candle.close, candle.volume) == (
                before.close, before.close, before.close, before.close, 0.0)


def test_a_hole_is_never_taken_for_quiet_minutes() -> None:
    """Minutes overlapping a reported hole get no candle; the feed then says what is quiet."""
    aggregator = CandleAggregator(("1m", "5m"))
    aggregator.add(_trade("XRP/USDT", T0 + 10, 1.0, 1.0, 1))
    aggregator.unknown("XRP/USDT", T0 + 10, T0 + 3 * US_PER_MINUTE + 6)
    closed = aggregator.add(_trade("XRP/USDT", T0 + 3 * US_PER_MINUTE + 5, 2.0, 1.0, 9))
    assert [(c.timeframe, c.open_time_us) for c in closed] == [("1m", T0)]  # 1, 2: a hole
    # Another symbol's trade at 7:30 says the feed was alive: minutes 4..6 of XRP are quiet
    # (the 5m bucket of minute 3 too, closed at 5:00); minute 7 is still forming.
    assert aggregator.advance("XRP/USDT", T0 + 7 * US_PER_MINUTE + 30_000_000) == [
        Candle("XRP/USDT", "1m", T0 + 3 * US_PER_MINUTE, 2.0, 2.0, 2.0, 2.0, 1.0, 1),
        *[Candle("XRP/USDT", "1m", T0 + m * US_PER_MINUTE, 2.0, 2.0, 2.0, 2.0, 0.0, 0)
          for m in (4, 5, 6)],
        Candle("XRP/USDT", "5m", T0, 1.0, 2.0, 1.0, 2.0, 2.0, 2)]
    assert aggregator.forming() == []
    # A trade arriving after that evidence, in a minute taken for quiet, corrects it and the
    # quiet minutes after it.
    assert aggregator.add(_trade("XRP/USDT", T0 + 5 * US_PER_MINUTE + 1, 3.0, 1.0, 10)) == [
        Candle("XRP/USDT", "1m", T0 + 5 * US_PER_MINUTE, 3.0, 3.0, 3.0, 3.0, 1.0, 1),
        Candle("XRP/USDT", "1m", T0 + 6 * US_PER_MINUTE, 3.0, 3.0, 3.0, 3.0, 0.0, 0)]
    assert aggregator.advance("BTC/USDT", T0 + 9 * US_PER_MINUTE) == []  # nothing known of it


def test_higher_timeframes_of_quiet_minutes_equal_those_built_from_the_trades(
    shared_data: Path
) -> None:
    """The 1m candles of a quiet market (real XRP/ETH trades: a third of its minutes have none),
    resampled in batch and one at a time, give the 5m, 15m and 1h candles built from the
    trades: a quiet minute's price never becomes an open, high or low."""
    trades = list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", "XRP/ETH"))
    built = build_candles(trades, TIMEFRAMES)
    minutes = [c for c in built if c.timeframe == "1m"][:-1]  # the last one is still forming
    assert sum(c.quiet for c in minutes) > 1000
    frame = pd.DataFrame(
        [(pd.Timestamp(c.open_time_us, unit="us", tz="UTC"), c.open, c.high, c.low, c.close,
          c.volume, c.trade_count) for c in minutes],
        columns=["open_time", "open", "high", "low", "close", "volume", "trade_count"])
    for timeframe in ("5m", "15m", "1h"):
        expected = [(c.open_time_us, c.open, c.high, c.low, c.close, c.volume, c.trade_count)
                    for c in built if c.timeframe == timeframe
                    and c.close_time_us <= minutes[-1].close_time_us]
        batch = resample_candles(frame, timeframe)
        assert list(zip(batch["open_time"].dt.as_unit("us").astype("int64").tolist(),
                        batch["open"], batch["high"], batch["low"], batch["close"],
                        batch["volume"], batch["trade_count"], strict=True)) == expected
        resampler = CandleResampler("XRP/ETH", timeframe)
        one_by_one = [c for m in minutes for c in resampler.add(m)]
        assert [(c.open_time_us, c.open, c.high, c.low, c.close, c.volume, c.trade_count)
                for c in one_by_one] == expected
        assert any(c[-1] == 0 for c in expected) or timeframe != "5m"  # some 5m are all quiet


def test_the_newest_trade_arriving_after_its_bucket_closed_prices_the_quiet_ones_after() -> None:
    aggregator = CandleAggregator("1m")
    aggregator.add(_trade("XRP/USDT", T0 + 10, 1.0, 1.0, 1))
    aggregator.advance("XRP/USDT", T0 + 4 * US_PER_MINUTE)  # minutes 0..3 closed, 1..3 quiet
    # Trade 2 printed in minute 0 after trade 1 but arrives now: minute 0 and its quiet
    # followers are corrected, and it is the close the later quiet minutes carry.
    corrected = aggregator.add(_trade("XRP/USDT", T0 + 50_000_000, 2.0, 1.0, 2))
    assert [(c.open_time_us, c.close) for c in corrected] == [
        (T0 + m * US_PER_MINUTE, 2.0) for m in range(4)]
    closed = aggregator.add(_trade("XRP/USDT", T0 + 7 * US_PER_MINUTE + 1, 3.0, 1.0, 3))
    assert [(c.open_time_us, c.close, c.trade_count) for c in closed] == [
        (T0 + m * US_PER_MINUTE, 2.0, 0) for m in (4, 5, 6)]
