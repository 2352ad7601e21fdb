"""Paper fills: slippage, fees, balances."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from triplegain_core.execution.paper import PaperExecutor, UnfillableOrderError
from triplegain_core.marketdata.snapshot import BookLevel, BookTop
from triplegain_core.model.market import Asset, Side
from triplegain_core.model.orders import Order, OrderPurpose, OrderType, TimeInForce
from triplegain_core.portfolio.balances import DEFAULT_STARTING_BALANCES, InsufficientBalanceError, Portfolio

T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)


def _order(symbol: str, side: Side, qty: float) -> Order:
    return Order(
        order_id="acct:sig:entry", account="acct", time=T0, symbol=symbol, side=side, quantity=qty,
        purpose=OrderPurpose.ENTRY, check_id="chk", position_id="acct:sig",
    )


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
    order = _order("XRP/USDT", Side.BUY, 10.0)
    first = PaperExecutor().execute(order, 0.5, Portfolio("acct", DEFAULT_STARTING_BALANCES))
    second = PaperExecutor().execute(order, 0.5, Portfolio("acct", DEFAULT_STARTING_BALANCES))
    assert first == second


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        PaperExecutor(fee_rate=-0.1)
    with pytest.raises(ValueError):
        PaperExecutor(slippage=1.0)
    with pytest.raises(ValueError):
        PaperExecutor().execute(_order("XRP/USDT", Side.BUY, 1.0), 0.0, Portfolio("acct", DEFAULT_STARTING_BALANCES))


# --- the book, price protection and leverage

BOOK = BookTop(
    symbol="XRP/USDT", ts_us=0,
    bids=(BookLevel(0.499, 100.0), BookLevel(0.498, 200.0)),
    asks=(BookLevel(0.501, 100.0), BookLevel(0.502, 50.0), BookLevel(0.504, 100.0)),
)


def test_market_buy_walks_the_asks() -> None:
    executor = PaperExecutor(fee_rate=0.001, slippage=0.0005)
    portfolio = Portfolio("acct", DEFAULT_STARTING_BALANCES)
    fill = executor.execute(_order("XRP/USDT", Side.BUY, 200.0), 0.5, portfolio, book=BOOK)
    assert fill.quantity == 200.0
    assert fill.price == pytest.approx((100 * 0.501 + 50 * 0.502 + 50 * 0.504) / 200)
    assert fill.fee == pytest.approx(0.001 * 200 * fill.price)
    assert portfolio.balance(Asset.USDT) == pytest.approx(1000.0 - 200 * fill.price * 1.001)


def test_market_sell_walks_the_bids_and_beyond_the_book_is_worse() -> None:
    executor = PaperExecutor(fee_rate=0.0, slippage=0.001)
    portfolio = Portfolio("acct", DEFAULT_STARTING_BALANCES)
    fill = executor.execute(_order("XRP/USDT", Side.SELL, 400.0), 0.5, portfolio, BOOK)
    # 300 in the book, the last 100 at the last bid moved by the slippage.
    assert fill.price == pytest.approx((100 * 0.499 + 200 * 0.498 + 100 * 0.498 * 0.999) / 400)


def test_limit_ioc_takes_only_levels_within_its_price() -> None:
    executor = PaperExecutor(fee_rate=0.0, slippage=0.0005)
    order = _order("XRP/USDT", Side.BUY, 300.0).model_copy(update={
        "order_type": OrderType.LIMIT, "time_in_force": TimeInForce.IOC, "limit_price": 0.502})
    fill = executor.execute(order, 0.5, Portfolio("acct", DEFAULT_STARTING_BALANCES), BOOK)
    assert fill.quantity == 150.0 and fill.price <= 0.502
    tight = order.model_copy(update={"limit_price": 0.5})
    portfolio = Portfolio("acct", DEFAULT_STARTING_BALANCES)
    with pytest.raises(UnfillableOrderError):
        executor.execute(tight, 0.5, portfolio, BOOK)
    assert portfolio.balances == DEFAULT_STARTING_BALANCES
    # Without a book, the fixed slippage decides: at the limit it fills, above it does not.
    at_limit = order.model_copy(update={"limit_price": 0.5 * 1.0005})
    assert executor.execute(at_limit, 0.5, Portfolio("acct", DEFAULT_STARTING_BALANCES)).quantity == 300.0
    with pytest.raises(UnfillableOrderError):
        executor.execute(order.model_copy(update={"limit_price": 0.5}), 0.5,
                         Portfolio("acct", DEFAULT_STARTING_BALANCES))


def test_book_of_another_symbol_is_refused() -> None:
    with pytest.raises(ValueError):
        PaperExecutor().execute(_order("BTC/USDT", Side.BUY, 0.001), 40_000.0,
                                Portfolio("acct", {Asset.USDT: 1000.0}), BOOK)


def test_leveraged_long_borrows_quote_and_its_exit_repays_it() -> None:
    executor = PaperExecutor(fee_rate=0.001, slippage=0.0)
    portfolio = Portfolio("acct", {Asset.USDT: 101.0})
    entry = _order("XRP/USDT", Side.BUY, 300.0).model_copy(update={"leverage": 3.0})
    fill = executor.execute(entry, 1.0, portfolio)
    assert fill.loan_change == pytest.approx(200.0) and fill.loan_asset is Asset.USDT
    assert portfolio.liabilities[Asset.USDT] == pytest.approx(200.0)
    assert portfolio.balance(Asset.USDT) == pytest.approx(101.0 - 100.0 - 0.3)
    assert portfolio.equity_usdt({"XRP/USDT": 1.0}) == pytest.approx(101.0 - 0.3)
    exit_order = Order(order_id="x", account="acct", time=T0, symbol="XRP/USDT", side=Side.SELL, quantity=300.0,
                       purpose=OrderPurpose.TAKE_PROFIT, check_id="c", position_id="p", repay_loan=fill.loan_change)
    exit_fill = executor.execute(exit_order, 1.1, portfolio)
    assert exit_fill.loan_change == pytest.approx(-200.0)
    assert portfolio.liabilities[Asset.USDT] == pytest.approx(0.0)
    # 30 of gain on 300 of notional: 30% on the 100 of own money, less 0.3 + 0.33 of fees.
    assert portfolio.balance(Asset.USDT) == pytest.approx(101.0 + 30.0 - 0.3 - 0.33)


def test_leveraged_short_borrows_the_base_it_sells() -> None:
    executor = PaperExecutor(fee_rate=0.0, slippage=0.0)
    portfolio = Portfolio("acct", {Asset.USDT: 100.0})
    entry = _order("XRP/USDT", Side.SELL, 100.0).model_copy(update={"leverage": 2.0})
    fill = executor.execute(entry, 1.0, portfolio)
    assert fill.loan_asset is Asset.XRP and fill.loan_change == 100.0
    assert portfolio.balance(Asset.XRP) == 0.0 and portfolio.liabilities[Asset.XRP] == 100.0
    assert portfolio.equity_usdt({"XRP/USDT": 0.9}) == pytest.approx(200.0 - 90.0)
    exit_order = Order(order_id="x", account="acct", time=T0, symbol="XRP/USDT", side=Side.BUY, quantity=100.0,
                       purpose=OrderPurpose.TAKE_PROFIT, check_id="c", position_id="p", repay_loan=100.0)
    executor.execute(exit_order, 0.9, portfolio)
    assert portfolio.liabilities[Asset.XRP] == 0.0 and portfolio.balance(Asset.USDT) == pytest.approx(110.0)
