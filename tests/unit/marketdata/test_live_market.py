"""The loop's market view: higher timeframes from 1m candles, ordering, books of the moment."""

from __future__ import annotations

import numpy as np
import pandas as pd

from triplegain_core.marketdata.live_market import BOOK_MAX_AGE_US, LiveMarket, book_top
from triplegain_core.marketdata.snapshot import BookLevel, BookTop
from triplegain_core.model.market import US_PER_MINUTE, Candle, datetime_to_us
from triplegain_core.model.quotes import BookSnapshot, LastPrice

T0 = 1_700_000_040 * 1_000_000 - (1_700_000_040 * 1_000_000) % (60 * US_PER_MINUTE)


def _candle(minute: int, close: float = 1.0, symbol: str = "XRP/USDT") -> Candle:
    return Candle(symbol, "1m", T0 + minute * US_PER_MINUTE, close, close * 1.01, close * 0.99, close, 10.0, 3)


def test_five_minute_windows_equal_the_exchanges_own_candles(shared_data) -> None:
    minutes = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet")
    exchange = pd.read_parquet(shared_data / "binance_xrp-eth_5m.parquet")
    market = LiveMarket(("XRP/USDT",), ("5m",), capacity=len(exchange))
    for row in minutes.itertuples():
        market.add_candle(Candle("XRP/USDT", "1m", datetime_to_us(row.ts.to_pydatetime()), row.open, row.high,
                                 row.low, row.close, row.volume, 1))
    window = market.snapshot(market.candle_time_us or 0, "5m").window("XRP/USDT", "5m")
    assert window is not None
    closed = exchange.iloc[: len(window)]  # the last bucket closes with its last minute
    assert len(window) >= len(exchange) - 1
    assert np.array_equal(window.open_time_us, [datetime_to_us(t.to_pydatetime()) for t in closed["ts"]])
    for column in ("open", "high", "low", "close"):
        assert np.array_equal(getattr(window, column), closed[column].to_numpy())
    assert np.allclose(window.volume, closed["volume"].to_numpy(), rtol=1e-12)


def test_corrections_and_other_series_are_ignored_and_time_never_goes_back() -> None:
    market = LiveMarket(("XRP/USDT", "BTC/USDT"), ("5m",))
    assert market.add_candle(_candle(0)) and market.add_candle(_candle(1))
    assert not market.add_candle(_candle(1, close=2.0))  # a correction of a used candle
    assert not market.add_candle(_candle(2, symbol="XRP/BTC"))  # not traded here
    assert market.add_candle(_candle(5, symbol="BTC/USDT", close=50_000.0))
    late = _candle(2)
    assert market.add_candle(late)
    assert market.candle_time_us == _candle(5).close_time_us  # the late XRP candle does not rewind time
    assert market.prices == {"XRP/USDT": 1.0, "BTC/USDT": 50_000.0}
    assert [c.open_time_us for c in market.history("XRP/USDT")] == [_candle(m).open_time_us for m in (0, 1, 2)]
    assert set(market.snapshot(market.candle_time_us or 0).candles) == {("XRP/USDT", "1m"), ("BTC/USDT", "1m")}
    market.add_candle(_candle(5))  # a candle of the next bucket closes XRP's first 5m candle
    snapshot = market.snapshot(market.candle_time_us or 0)
    assert set(snapshot.candles) == {("XRP/USDT", "1m"), ("BTC/USDT", "1m"), ("XRP/USDT", "5m")}
    five = snapshot.window("XRP/USDT", "5m")
    assert five is not None and len(five) == 1 and five.close[-1] == late.close and five.volume[-1] == 30.0
    assert set(market.snapshot(market.candle_time_us or 0, "1m").candles) == {("XRP/USDT", "1m"), ("BTC/USDT", "1m")}


def test_ticks_older_than_the_candles_are_ignored_and_books_belong_to_their_moment() -> None:
    market = LiveMarket(("XRP/USDT",))
    assert not market.observe_tick(LastPrice("XRP/USDT", 1.5, T0))  # no candle yet: no market time
    market.add_candle(_candle(0))
    close = _candle(0).close_time_us
    assert not market.observe_tick(LastPrice("XRP/USDT", 1.5, close - 1))
    assert market.observe_tick(LastPrice("XRP/USDT", 1.2, close + 1_000))
    assert market.prices["XRP/USDT"] == 1.2 and market.now_us() == close + 1_000
    crossed = BookSnapshot("XRP/USDT", close, 5, ((1.3, 1.0),), ((1.2, 1.0),))
    market.set_books({"XRP/USDT": crossed})
    assert market.snapshot(close).books == {}
    book = BookSnapshot("XRP/USDT", close, 5, ((1.19, 1.0),), ((1.21, 1.0),))
    market.set_books({"XRP/USDT": book})
    assert market.snapshot(close).book("XRP/USDT").best_ask == 1.21
    assert market.snapshot(close + BOOK_MAX_AGE_US + 1).books == {}  # a replayed backlog's book is not of its time


def test_market_risk_is_estimated_once_per_candle() -> None:
    market = LiveMarket(("XRP/USDT",))
    for minute in range(40):
        market.add_candle(_candle(minute, close=1.0 + 0.01 * np.sin(minute)))
    first = market.market_risk()
    assert market.market_risk() is first and first.volatility_of("XRP/USDT") is not None
    market.add_candle(_candle(40, close=1.2))
    assert market.market_risk() is not first


def test_a_seed_takes_the_published_higher_candles_that_closed_before_its_first_whole_bucket() -> None:
    history = [_candle(minute, close=1.0 + minute / 100) for minute in range(3, 23)]
    # As the streamer published them: 5m candles from an hour before, through the bucket the
    # 1m seed starts inside of (minute 0), and past it (minute 5, which the seed builds itself).
    published = [Candle("XRP/USDT", "5m", T0 + m * US_PER_MINUTE, 2.0, 2.1, 1.9, 2.0 + m / 1000, 50.0, 15)
                 for m in range(-60, 10, 5)]
    seeded = LiveMarket(("XRP/USDT",), ("5m", "1h"))
    taken = seeded.seed({"XRP/USDT": history}, {("XRP/USDT", "5m"): published})
    assert taken == len(history) + 13  # minutes -60 .. 0: the thirteen that close by minute 5
    window = seeded.snapshot(history[-1].close_time_us, "5m").window("XRP/USDT", "5m")
    assert window is not None
    assert list(window.open_time_us) == [T0 + m * US_PER_MINUTE for m in (*range(-60, 5, 5), 5, 10, 15)]
    assert list(window.close[:13]) == [c.close for c in published[:13]]
    # Minute 5 on is built from the 1m candles, as without a published series.
    alone = LiveMarket(("XRP/USDT",), ("5m",))
    alone.seed({"XRP/USDT": history})
    built = alone.snapshot(history[-1].close_time_us, "5m").window("XRP/USDT", "5m")
    assert built is not None and np.array_equal(window.close[13:], built.close)
    # No 1h series was published: the seed builds none from twenty minutes of 1m candles.
    assert seeded.snapshot(history[-1].close_time_us, "1h").window("XRP/USDT", "1h") is None


def test_seeded_history_starts_higher_timeframes_on_a_whole_bucket() -> None:
    # T0 opens an hour; the seed starts 3 minutes into a 5m bucket.
    seeded = LiveMarket(("XRP/USDT",), ("5m",))
    history = [_candle(minute, close=1.0 + minute / 100) for minute in range(3, 23)]
    assert seeded.seed({"XRP/USDT": history, "BTC/USDT": [_candle(0, symbol="BTC/USDT")]}) == len(history)
    fed = LiveMarket(("XRP/USDT",), ("5m",))
    for candle in history[2:]:  # from the first whole bucket, minute 5
        fed.add_candle(candle)
    now_us = history[-1].close_time_us
    window = seeded.snapshot(now_us, "5m").window("XRP/USDT", "5m")
    expected = fed.snapshot(now_us, "5m").window("XRP/USDT", "5m")
    assert window is not None and expected is not None
    assert list(window.open_time_us) == [T0 + m * US_PER_MINUTE for m in (5, 10, 15)]
    assert np.array_equal(window.close, expected.close) and np.array_equal(window.high, expected.high)
    # The 1m history is all of it, and the market stands at the seed's last candle.
    assert seeded.history("XRP/USDT") == history
    assert seeded.candle_time_us == now_us and seeded.prices == {"XRP/USDT": history[-1].close}
    # Live candles go on from there; the seed's own candles are not taken twice.
    assert not seeded.add_candle(history[-1])
    assert seeded.add_candle(_candle(23))


def test_a_published_book_becomes_the_same_book_top_without_a_second_check() -> None:
    snapshot = BookSnapshot("XRP/USDT", 5, 3, ((0.5, 10.0), (0.49, 20.0)), ((0.51, 5.0), (0.52, 1.0)))
    checked = BookTop("XRP/USDT", 5, (BookLevel(0.5, 10.0), BookLevel(0.49, 20.0)),
                      (BookLevel(0.51, 5.0), BookLevel(0.52, 1.0)))
    assert book_top(snapshot) == checked
    crossed = BookSnapshot("XRP/USDT", 5, 3, ((0.52, 1.0),), ((0.51, 5.0),))
    one_sided = BookSnapshot("XRP/USDT", 5, 3, ((0.5, 1.0),), ())
    assert book_top(crossed) is None and book_top(one_sided) is None


def _windows(market: LiveMarket) -> dict[tuple[str, str], tuple[list[int], list[float]]]:
    snapshot = market.snapshot(market.candle_time_us or 0)
    return {key: (window.open_time_us.tolist(), window.close.tolist()) for key, window in snapshot.candles.items()}


def test_an_expected_batch_gives_every_moment_the_windows_the_rings_give() -> None:
    symbols, timeframes = ("XRP/USDT", "BTC/USDT"), ("5m", "15m")
    rng = np.random.default_rng(3)
    closes = {symbol: 1 + rng.random(400) for symbol in symbols}
    closes["XRP/USDT"][200] = 0.0  # not a valid close: no risk estimate over a window holding it
    # BTC misses minutes 100-109: a gap the foreseen series must keep as the rings do.
    batch = [_candle(m, float(closes[s][m]), s) for m in range(40, 400) for s in symbols
             if not (s == "BTC/USDT" and 100 <= m < 110)]
    plain, expecting = (LiveMarket(symbols, timeframes, capacity=30, history_length=50) for _ in range(2))
    for market in (plain, expecting):
        for minute in range(40):
            for symbol in symbols:
                market.add_candle(_candle(minute, float(closes[symbol][minute]), symbol))
    expecting.expect(batch)
    series = expecting.expected("XRP/USDT", "5m")
    assert series is not None and series[0].open_time_us[series[1]] == T0 + 40 * US_PER_MINUTE
    estimated = {True: 0, False: 0}
    for candle in batch:
        for market in (plain, expecting):
            market.add_candle(candle)
        # Every series full well past its capacity, and each moment's windows and risk estimates
        # the same (no snapshot while the invalid close is the price: a snapshot refuses it).
        if plain.prices["XRP/USDT"] > 0:
            assert _windows(expecting) == _windows(plain)
        assert expecting.recent("XRP/USDT", 50).close.tolist() == plain.recent("XRP/USDT", 50).close.tolist()
        ours, theirs = expecting.market_risk(), plain.market_risk()
        assert ours.estimated_correlation(*symbols) == theirs.estimated_correlation(*symbols)
        assert [ours.estimated_volatility(s) for s in symbols] == [theirs.estimated_volatility(s) for s in symbols]
        estimated[theirs.estimated_volatility("XRP/USDT") is not None] += 1
    assert estimated[True] and estimated[False]  # windows with and without the invalid close were seen
    assert expecting.recent("BTC/USDT", 50).close.tolist() == plain.recent("BTC/USDT", 50).close.tolist()
    expecting.settle()
    assert expecting.expected("XRP/USDT") is None and _windows(expecting) == _windows(plain)


def test_a_candle_not_foreseen_sends_its_series_back_to_its_ring() -> None:
    plain, expecting = LiveMarket(("XRP/USDT",)), LiveMarket(("XRP/USDT",))
    for market in (plain, expecting):
        market.add_candle(_candle(0))
    expecting.expect([_candle(1), _candle(2)])
    for market in (plain, expecting):
        market.add_candle(_candle(1))
        market.add_candle(_candle(5, close=2.0))  # not the candle of minute 2 the batch named
    assert expecting.expected("XRP/USDT") is None
    assert _windows(expecting) == _windows(plain)
    assert _windows(plain)[("XRP/USDT", "1m")][1] == [1.0, 1.0, 2.0]
