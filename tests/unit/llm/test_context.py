"""The one market context builder: a function of the candles known at the decision and the
account then, over fixed spans of market time."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from triplegain_core.llm.context import HISTORY_MINUTES, market_context
from triplegain_core.model.market import US_PER_MINUTE, Asset, Candle

T0 = 1_780_000_000 * 1_000_000 // US_PER_MINUTE * US_PER_MINUTE


def _candles(minutes: int, seed: int = 3) -> list[Candle]:
    closes = 0.5 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.001, minutes)))
    return [Candle("XRP/USDT", "1m", T0 + i * US_PER_MINUTE, float(c), float(c) * 1.0004, float(c) * 0.9996,
                   float(c), 100.0, 4) for i, c in enumerate(closes)]


def test_more_history_than_the_context_reads_changes_nothing() -> None:
    candles = _candles(HISTORY_MINUTES + 500)
    whole = market_context("XRP/USDT", candles, [], {Asset.USDT: 1000.0}, 1000.0)
    assert market_context("XRP/USDT", candles[-HISTORY_MINUTES:], [], {Asset.USDT: 1000.0}, 1000.0) == whole
    assert whole.indicators and whole.regime is not None and len(whole.candles) == 60
    assert whole.time.timestamp() * 1_000_000 == candles[-1].close_time_us and whole.price == candles[-1].close


def test_the_spans_are_market_time_so_a_gap_shortens_them() -> None:
    candles = _candles(600)
    gapped = candles[:-30] + [dataclasses.replace(c, open_time_us=c.open_time_us + 20 * US_PER_MINUTE)
                              for c in candles[-30:-20]]
    context = market_context("XRP/USDT", gapped, [], {}, None)
    # The last hour before the last close: the 10 candles after the gap and 30 before it.
    assert len(context.candles) == 40
    assert context.balances == {} and context.equity_usdt is None


def test_a_context_needs_a_candle() -> None:
    with pytest.raises(ValueError, match="a market context of XRP/USDT needs at least one closed candle"):
        market_context("XRP/USDT", [], [], {}, None)
