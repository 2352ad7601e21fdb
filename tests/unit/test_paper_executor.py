"""Paper fills: slippage, fees, balances."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from triplegain_core.market import Asset, Side
from triplegain_core.orders import Order, OrderPurpose
from triplegain_core.paper_executor import PaperExecutor
from triplegain_core.portfolio import DEFAULT_STARTING_BALANCES, InsufficientBalanceError, Portfolio

T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)


def _order(symbol: str, side: Side, qty: float) -> Order:
    return Order(
        order_id="acct:sig:entry", account="acct", time=T0, symbol=symbol, side=side, quantity=qty,
        purpose=OrderPurpose.ENTRY, check_id="chk", position_id="acct:sig",
    )


def test_worst_fill_price() -> None:
    executor = PaperExecutor(fee_rate=0.001, slippage=0.0005)
    assert executor.worst_fill_price(Side.BUY, 2.0) == 2.0 * 1.0005
    assert executor.worst_fill_price(Side.SELL, 2.0) == 2.0 * 0.9995


def test_buy_fill_arithmetic_and_balances() -> None:
    executor = PaperExecutor(fee_rate=0.001, slippage=0.0005)
    portfolio = Portfolio("acct", DEFAULT_STARTING_BALANCES)
    fill = executor.execute(_order("XRP/USDT", Side.BUY, 100.0), 0.5, portfolio)
    assert fill.fill_id == "acct:sig:entry:fill" and fill.order_id == "acct:sig:entry"
    assert fill.time == T0 and fill.account == "acct" and fill.side is Side.BUY
    assert fill.price == 0.5 * 1.0005
    assert fill.fee == 0.001 * 100.0 * 0.5 * 1.0005
    assert fill.fee_asset is Asset.USDT
    assert portfolio.balance(Asset.XRP) == 600.0
    assert portfolio.balance(Asset.USDT) == pytest.approx(1000.0 - 50.025 - 0.050025, abs=1e-12)


def test_sell_fill_arithmetic_and_fee_in_quote() -> None:
    executor = PaperExecutor(fee_rate=0.002, slippage=0.001)
    portfolio = Portfolio("acct", DEFAULT_STARTING_BALANCES)
    fill = executor.execute(_order("XRP/BTC", Side.SELL, 100.0), 1e-5, portfolio)
    assert fill.price == 1e-5 * 0.999
    assert fill.fee == 0.002 * 100.0 * 1e-5 * 0.999
    assert fill.fee_asset is Asset.BTC
    assert portfolio.balance(Asset.XRP) == 400.0
    assert portfolio.balance(Asset.BTC) == pytest.approx(100.0 * 0.999e-5 * 0.998, rel=1e-12)


def test_insufficient_balance_raises_and_leaves_portfolio_unchanged() -> None:
    executor = PaperExecutor()
    portfolio = Portfolio("acct", DEFAULT_STARTING_BALANCES)
    with pytest.raises(InsufficientBalanceError):
        executor.execute(_order("BTC/USDT", Side.BUY, 0.025), 40_000.0, portfolio)
    with pytest.raises(InsufficientBalanceError):
        executor.execute(_order("XRP/USDT", Side.SELL, 501.0), 0.5, portfolio)
    assert portfolio.balances == DEFAULT_STARTING_BALANCES


def test_replay_gives_the_same_fill() -> None:
    first = PaperExecutor().execute(_order("XRP/USDT", Side.BUY, 10.0), 0.5, Portfolio("acct", DEFAULT_STARTING_BALANCES))
    second = PaperExecutor().execute(_order("XRP/USDT", Side.BUY, 10.0), 0.5, Portfolio("acct", DEFAULT_STARTING_BALANCES))
    assert first == second


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        PaperExecutor(fee_rate=-0.1)
    with pytest.raises(ValueError):
        PaperExecutor(slippage=1.0)
    with pytest.raises(ValueError):
        PaperExecutor().execute(_order("XRP/USDT", Side.BUY, 1.0), 0.0, Portfolio("acct", DEFAULT_STARTING_BALANCES))
