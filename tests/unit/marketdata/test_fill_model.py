from __future__ import annotations

import math

import pytest

from triplegain_core.marketdata.fill_model import FillModel, within_limit
from triplegain_core.marketdata.snapshot import BookTop
from triplegain_core.model.market import BookLevel, Side

BOOK = BookTop(
    "XRP/USDT", 0,
    bids=(BookLevel(0.499, 100.0), BookLevel(0.498, 200.0)),
    asks=(BookLevel(0.501, 100.0), BookLevel(0.502, 200.0)),
)


def test_worst_fill_price() -> None:
    model = FillModel(fee_rate=0.001, slippage=0.0005)
    assert model.worst_fill_price(Side.BUY, 2.0) == 2.0 * 1.0005
    assert model.worst_fill_price(Side.SELL, 2.0) == 2.0 * 0.9995


def test_rates_outside_zero_to_one_are_refused() -> None:
    with pytest.raises(ValueError):
        FillModel(fee_rate=-0.1)
    with pytest.raises(ValueError):
        FillModel(slippage=1.0)


def test_book_fill_walks_the_levels_and_beyond_the_book_is_worse() -> None:
    model = FillModel(fee_rate=0.0, slippage=0.001)
    assert model.book_fill(Side.BUY, 150.0, BOOK) == (150.0, pytest.approx((100 * 0.501 + 50 * 0.502) / 150))
    filled, price = model.book_fill(Side.SELL, 400.0, BOOK)
    assert filled == 400.0 and price == pytest.approx((100 * 0.499 + 200 * 0.498 + 100 * 0.498 * 0.999) / 400)


def test_book_fill_stops_at_the_limit() -> None:
    model = FillModel(fee_rate=0.0, slippage=0.001)
    assert model.book_fill(Side.BUY, 400.0, BOOK, limit_price=0.502) == (300.0, pytest.approx(0.1505 / 0.3))
    filled, price = model.book_fill(Side.BUY, 10.0, BOOK, limit_price=0.5)
    assert filled == 0.0 and math.isnan(price)


def test_within_limit_is_on_the_taker_side() -> None:
    assert within_limit(Side.BUY, 1.0, None) and within_limit(Side.SELL, 1.0, None)
    assert within_limit(Side.BUY, 1.0, 1.0) and not within_limit(Side.BUY, 1.01, 1.0)
    assert within_limit(Side.SELL, 1.0, 1.0) and not within_limit(Side.SELL, 0.99, 1.0)
