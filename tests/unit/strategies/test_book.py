"""Order flow and market making on real XRP/ETH trades, with books built around the last trade.

The real trades give the taker flow (order flow) and the price around which the test lays
book levels whose sizes come from the real trade sizes; the book's lean and spread are then
set per case, so the decision logic is checked against an independent computation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from triplegain_core.marketdata.snapshot import BookLevel, BookTop, MarketSnapshot, TradeWindow
from triplegain_core.model.market import US_PER_SECOND, Side, Trade
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.registry import LoadedStrategy, discover_strategies
from triplegain_core.strategies.runner import StrategyRunner

SYMBOL = "XRP/BTC"  # XRP/ETH trades standing in for a crypto-quoted pair
STEP_S = 300
LOOKBACK_S = 300


@pytest.fixture(scope="module")
def trades(shared_data: Path) -> list[Trade]:
    frame = pd.read_parquet(shared_data / "binance_xrp-eth_trades.parquet")
    return [
        Trade(SYMBOL, int(r.trade_id), int(r.ts_ms) * 1000, float(r.price), float(r.amount), Side(r.side))
        for r in frame.itertuples()
    ]


@pytest.fixture(scope="module")
def strategies() -> dict[str, LoadedStrategy]:
    catalog = discover_strategies(entry_point_group=None)
    return {name: catalog.get(name) for name in ("order_flow", "market_making")}


def book_around(price: float, ts_us: int, spread: float, bid_size: float, ask_size: float, levels: int = 5) -> BookTop:
    """Levels every ``spread`` / 2 beyond a mid at the last trade price."""
    step = price * spread / 2
    return BookTop(
        SYMBOL, ts_us,
        bids=tuple(BookLevel(price - step * (1 + 2 * i), bid_size) for i in range(levels)),
        asks=tuple(BookLevel(price + step * (1 + 2 * i), ask_size) for i in range(levels)),
    )


def checkpoints(trades: list[Trade]) -> list[tuple[int, tuple[Trade, ...]]]:
    """(time, trades of the look-back ending there) every STEP_S seconds over the file."""
    times = np.array([t.ts_us for t in trades])
    result = []
    for ts in range(int(times[0]) + LOOKBACK_S * US_PER_SECOND, int(times[-1]), STEP_S * US_PER_SECOND):
        lo = int(np.searchsorted(times, ts - LOOKBACK_S * US_PER_SECOND, side="left"))
        hi = int(np.searchsorted(times, ts, side="right"))
        result.append((ts, tuple(trades[lo:hi])))
    return result


def taker_imbalance(window: tuple[Trade, ...]) -> float:
    buy = sum(t.qty for t in window if t.side is Side.BUY)
    sell = sum(t.qty for t in window if t.side is Side.SELL)
    return (buy - sell) / (buy + sell)


def test_order_flow_follows_trades_and_book_when_they_agree(
    trades: list[Trade], strategies: dict[str, LoadedStrategy]
) -> None:
    strategy = strategies["order_flow"]
    state = strategy.new_state(SYMBOL)
    outcomes = {SignalAction.LONG: 0, SignalAction.SHORT: 0}
    for ts, window in checkpoints(trades):
        if not window:
            continue
        size = float(np.median([t.qty for t in window]))
        price = window[-1].price
        heavy_bids = book_around(price, ts, 0.002, 3 * size, size)
        heavy_asks = book_around(price, ts, 0.002, size, 3 * size)
        tape = TradeWindow.from_trades(window)
        no_book = MarketSnapshot(ts_us=ts, trades={SYMBOL: tape})
        assert strategy.generate(no_book, strategy.config, state) is None
        flow = taker_imbalance(window)
        results = {}
        for label, book in (("bids", heavy_bids), ("asks", heavy_asks)):
            snapshot = MarketSnapshot(ts_us=ts, trades={SYMBOL: tape}, books={SYMBOL: book})
            results[label] = strategy.generate(snapshot, strategy.config, state)
        if len(window) < 10 or abs(flow) < 0.3:
            assert results == {"bids": None, "asks": None}
        elif flow > 0:
            assert results["asks"] is None
            signal = results["bids"]
            assert signal is not None and signal.action is SignalAction.LONG
            assert signal.entry == heavy_bids.best_ask
            assert signal.indicators["trade_imbalance"] == pytest.approx(flow)
            assert signal.stop_loss == pytest.approx(signal.entry * 0.995)
            outcomes[SignalAction.LONG] += 1
        else:
            assert results["bids"] is None
            signal = results["asks"]
            assert signal is not None and signal.action is SignalAction.SHORT
            assert signal.entry == heavy_asks.best_bid
            assert signal.take_profit < signal.entry < signal.stop_loss
            outcomes[SignalAction.SHORT] += 1
    assert outcomes[SignalAction.LONG] > 0 and outcomes[SignalAction.SHORT] > 0


def test_order_flow_ignores_trades_outside_the_lookback(
    trades: list[Trade], strategies: dict[str, LoadedStrategy]
) -> None:
    strategy = strategies["order_flow"]
    buys = tuple(t for t in trades if t.side is Side.BUY)[:50]
    last = buys[-1]
    book = book_around(last.price, last.ts_us, 0.002, 3.0, 1.0)
    tape = TradeWindow.from_trades(buys)
    fresh = MarketSnapshot(ts_us=last.ts_us, trades={SYMBOL: tape}, books={SYMBOL: book})
    assert strategy.generate(fresh, strategy.config, strategy.new_state(SYMBOL)) is not None
    # No trades: no flow to read, whatever the book says.
    assert strategy.generate(MarketSnapshot(ts_us=last.ts_us, books={SYMBOL: book}), strategy.config,
                             strategy.new_state(SYMBOL)) is None
    later = last.ts_us + (LOOKBACK_S + 1) * US_PER_SECOND
    stale = MarketSnapshot(ts_us=later, trades={SYMBOL: tape},
                           books={SYMBOL: book_around(last.price, later, 0.002, 3.0, 1.0)})
    assert strategy.generate(stale, strategy.config, strategy.new_state(SYMBOL)) is None
    # Trades stamped after the snapshot time are not read either.
    early = MarketSnapshot(ts_us=buys[0].ts_us - 1, trades={SYMBOL: tape}, books={SYMBOL: book})
    assert strategy.generate(early, strategy.config, strategy.new_state(SYMBOL)) is None


def test_market_making_quotes_the_leaning_side_of_a_wide_spread(
    trades: list[Trade], strategies: dict[str, LoadedStrategy]
) -> None:
    strategy = strategies["market_making"]
    state = strategy.new_state(SYMBOL)
    checked = 0
    for ts, window in checkpoints(trades):
        if not window:
            continue
        size = float(np.median([t.qty for t in window]))
        price = window[-1].price

        def decide(book: BookTop | None, ts: int = ts) -> Signal | None:
            books = {SYMBOL: book} if book is not None else {}
            return strategy.generate(MarketSnapshot(ts_us=ts, books=books), strategy.config, state)

        assert decide(None) is None
        # 0.1% spread does not pay two 0.1% fees: no quote however the book leans.
        assert decide(book_around(price, ts, 0.001, 3 * size, size)) is None
        assert decide(book_around(price, ts, 0.005, size, size)) is None  # wide but balanced
        long = decide(wide := book_around(price, ts, 0.005, 3 * size, size))
        assert long is not None and long.action is SignalAction.LONG
        assert (long.entry, long.take_profit) == (wide.best_bid, wide.best_ask)
        assert long.entry - long.stop_loss == pytest.approx(2 * wide.spread)
        short = decide(wide := book_around(price, ts, 0.005, size, 3 * size))
        assert short is not None and short.action is SignalAction.SHORT
        assert (short.entry, short.take_profit) == (wide.best_ask, wide.best_bid)
        assert short.stop_loss - short.entry <= 0.02 * short.entry
        checked += 1
    assert checked > 100


def test_book_rejects_crossed_or_unsorted_levels() -> None:
    with pytest.raises(ValueError, match="crossed"):
        BookTop(SYMBOL, 0, bids=(BookLevel(1.01, 1.0),), asks=(BookLevel(1.0, 1.0),))
    with pytest.raises(ValueError, match="decrease"):
        BookTop(SYMBOL, 0, bids=(BookLevel(0.98, 1.0), BookLevel(0.99, 1.0)), asks=(BookLevel(1.0, 1.0),))
    with pytest.raises(ValueError, match="positive"):
        BookTop(SYMBOL, 0, bids=(BookLevel(0.99, 1.0),), asks=(BookLevel(1.0, 0.0),))
    with pytest.raises(ValueError, match="positive"):
        BookTop(SYMBOL, 0, bids=(BookLevel(float("nan"), 1.0),), asks=(BookLevel(1.0, 1.0),))


def test_book_strategies_do_not_repeat_themselves_on_every_update(
    trades: list[Trade], strategies: dict[str, LoadedStrategy]
) -> None:
    runner = StrategyRunner([strategies["market_making"]])
    price = trades[-1].price
    start = trades[-1].ts_us
    emitted = []
    for tick in range(1200):  # two minutes of 100 ms book updates leaning to the bids
        ts = start + tick * 100_000
        book = book_around(price, ts, 0.005, 3.0, 1.0)
        emitted += [(tick, s.action) for s in runner.run(MarketSnapshot(ts_us=ts, books={"XRP/BTC": book}))]
    # Once, then again when the 60 s repeat interval has passed.
    assert emitted == [(0, SignalAction.LONG), (600, SignalAction.LONG)]
    ts = start + 1200 * 100_000
    flipped = runner.run(MarketSnapshot(ts_us=ts, books={"XRP/BTC": book_around(price, ts, 0.005, 1.0, 3.0)}))
    assert [s.action for s in flipped] == [SignalAction.SHORT]  # a change of mind is said at once
