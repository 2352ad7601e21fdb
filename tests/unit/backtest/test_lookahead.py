"""Look-ahead and warm-up analysis: a strategy that peeks is caught by both; the built-in ones are checked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.support.peeking_strategy import PEEKING
from triplegain_core.backtest.lookahead import lookahead_check, warmup_check
from triplegain_core.config import StrategySettings
from triplegain_core.model.market import Candle, datetime_to_us
from triplegain_core.strategies.selection import select_strategies


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> list[Candle]:
    frame = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet")
    return [Candle("XRP/USDT", "1m", datetime_to_us(r.ts.to_pydatetime()), r.open, r.high, r.low, r.close,
                   r.volume, 1) for r in frame.itertuples()]


def test_a_strategy_that_reads_the_future_is_caught_by_both_checks(candles) -> None:
    ahead = lookahead_check(PEEKING, candles[:600])
    assert not ahead.clean and ahead.signals > 5 and ahead.differences
    assert "LOOK-AHEAD" in ahead.summary()
    warm = warmup_check(PEEKING, candles[:600], warmup=60)
    assert not warm.clean and warm.differences and "WARM-UP DEPENDENT" in warm.summary()


def test_every_built_in_candle_strategy_reads_no_future(candles) -> None:
    catalog = select_strategies(StrategySettings(), ("XRP/USDT",))
    reports = {s.name: lookahead_check(s, candles, max_signals=15) for s in catalog.strategies}
    assert {name for name, r in reports.items() if r.not_checkable} == {"market_making", "order_flow"}
    checked = {name: r for name, r in reports.items() if r.not_checkable is None}
    assert all(r.clean for r in checked.values()), [r.summary() for r in checked.values() if not r.clean]
    assert sum(r.signals > 0 for r in checked.values()) >= 5  # not vacuous: most of them fired


def test_the_built_in_strategies_do_not_depend_on_their_warm_up_beyond_their_window(candles) -> None:
    catalog = select_strategies(StrategySettings(), ("XRP/USDT",))
    for strategy in catalog.strategies:
        if strategy.reads - {"candles"} or getattr(strategy.config, "timeframe", "1m") not in ("1m", "5m"):
            continue  # the 1h ones lack 2 windows of hours in this history
        report = warmup_check(strategy, candles)
        assert report.clean, report.summary()


def test_indicators_seeded_at_the_first_candle_are_reported_unsettled(candles) -> None:
    # An EMA-50 seeded 60 candles before the span has not forgotten its seed: it is reported.
    report = warmup_check(PEEKING, candles[:600], warmup=60)
    names = dict(report.unsettled_indicators)
    assert "ema_50" in names and names["ema_50"] > 1e-9
    assert "sma_20" not in names  # a plain moving average of 20 settles within 60 candles


def test_a_history_too_short_for_the_warm_up_is_named(candles) -> None:
    with pytest.raises(ValueError, match="a warm-up check of 300 needs more than 600"):
        warmup_check(PEEKING, candles[:500], warmup=300)
