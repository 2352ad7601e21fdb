"""Portfolio balances, valuation and fills."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from triplegain_core.model.market import Asset, Side
from triplegain_core.model.orders import Fill
from triplegain_core.portfolio.balances import (
    DEFAULT_STARTING_BALANCES,
    InsufficientBalanceError,
    MissingPriceError,
    Portfolio,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
PRICES = {"BTC/USDT": 40_000.0, "XRP/USDT": 0.5, "XRP/BTC": 0.5 / 40_000.0}


def _fill(symbol: str, side: Side, qty: float, price: float, fee: float, fee_asset: Asset, account: str = "a") -> Fill:
    return Fill(
        fill_id="f", order_id="o", account=account, time=T0, symbol=symbol, side=side,
        quantity=qty, price=price, fee=fee, fee_asset=fee_asset,
    )


def test_defaults_and_copies() -> None:
    assert DEFAULT_STARTING_BALANCES == {Asset.USDT: 1000.0, Asset.XRP: 500.0, Asset.BTC: 0.0}
    portfolio = Portfolio("a", {Asset.USDT: 10.0})
    assert portfolio.balances == {Asset.USDT: 10.0, Asset.XRP: 0.0, Asset.BTC: 0.0}
    portfolio.balances[Asset.USDT] = 99.0
    assert portfolio.balance(Asset.USDT) == 10.0


def test_equity_in_usdt() -> None:
    portfolio = Portfolio("a", {Asset.USDT: 100.0, Asset.XRP: 200.0, Asset.BTC: 0.01})
    assert portfolio.equity_usdt(PRICES) == pytest.approx(100.0 + 200 * 0.5 + 0.01 * 40_000)
    assert portfolio.to_usdt(Asset.BTC, 0.5, PRICES) == 20_000.0
    assert portfolio.to_usdt(Asset.USDT, 7.0, {}) == 7.0


def test_missing_price_only_matters_for_held_assets() -> None:
    assert Portfolio("a", DEFAULT_STARTING_BALANCES).equity_usdt({"XRP/USDT": 0.5}) == 1250.0
    with pytest.raises(MissingPriceError):
        Portfolio("a", DEFAULT_STARTING_BALANCES).equity_usdt({"BTC/USDT": 40_000.0})
    with pytest.raises(KeyError):  # MissingPriceError is a KeyError
        Portfolio("a", {Asset.BTC: 1.0}).to_usdt(Asset.BTC, 1.0, {})


def test_buy_and_sell_move_base_quote_and_fee() -> None:
    portfolio = Portfolio("a", DEFAULT_STARTING_BALANCES)
    portfolio.apply_fill(_fill("XRP/USDT", Side.BUY, 100.0, 0.5, 0.05, Asset.USDT))
    assert portfolio.balance(Asset.XRP) == 600.0
    assert portfolio.balance(Asset.USDT) == pytest.approx(1000.0 - 50.0 - 0.05)
    portfolio.apply_fill(_fill("XRP/BTC", Side.SELL, 200.0, 1e-5, 2e-6, Asset.BTC))
    assert portfolio.balance(Asset.XRP) == 400.0
    assert portfolio.balance(Asset.BTC) == pytest.approx(200.0 * 1e-5 - 2e-6)


@pytest.mark.parametrize(
    "fill",
    [
        _fill("XRP/USDT", Side.SELL, 500.0001, 0.5, 0.0, Asset.USDT),  # more base than held
        _fill("BTC/USDT", Side.BUY, 0.0251, 40_000.0, 0.0, Asset.USDT),  # more quote than held
        _fill("XRP/USDT", Side.BUY, 2000.0, 0.5, 0.01, Asset.USDT),  # the fee tips it over
    ],
)
def test_insufficient_balance_raises_and_changes_nothing(fill: Fill) -> None:
    portfolio = Portfolio("a", DEFAULT_STARTING_BALANCES)
    with pytest.raises(InsufficientBalanceError):
        portfolio.apply_fill(fill)
    assert portfolio.balances == DEFAULT_STARTING_BALANCES


def test_rejects_foreign_fills() -> None:
    portfolio = Portfolio("a", DEFAULT_STARTING_BALANCES)
    with pytest.raises(ValueError):
        portfolio.apply_fill(_fill("XRP/USDT", Side.BUY, 1.0, 0.5, 0.0, Asset.USDT, account="b"))
    with pytest.raises(ValueError):
        portfolio.apply_fill(_fill("XRP/USDT", Side.BUY, 1.0, 0.5, 0.0, Asset.XRP))
    assert portfolio.balances == DEFAULT_STARTING_BALANCES


def test_snapshot() -> None:
    portfolio = Portfolio("a", DEFAULT_STARTING_BALANCES)
    snapshot = portfolio.snapshot(T0, PRICES)
    assert snapshot.account == "a" and snapshot.time == T0
    assert snapshot.balances == DEFAULT_STARTING_BALANCES
    assert snapshot.prices == PRICES
    assert snapshot.equity_usdt == 1250.0


def test_snapshots_show_the_holdings_of_their_moment_across_fills_and_restores() -> None:
    portfolio = Portfolio("a", DEFAULT_STARTING_BALANCES)
    before = portfolio.snapshot(T0, PRICES)
    assert portfolio.snapshot(T0, PRICES).balances is before.balances  # unchanged: one copy shared
    portfolio.apply_fill(_fill("XRP/USDT", Side.BUY, 100.0, 0.5, 0.0, Asset.USDT))
    after = portfolio.snapshot(T0, PRICES)
    assert before.balances == DEFAULT_STARTING_BALANCES
    assert after.balances[Asset.XRP] == 600.0 and after.balances[Asset.USDT] == 950.0
    portfolio.import_state(before_state := Portfolio("a", {Asset.BTC: 1.0}).export_state())
    restored = portfolio.snapshot(T0, PRICES)
    assert restored.balances == before_state.balances and after.balances[Asset.XRP] == 600.0


def test_float_residue_is_tolerated_and_clamped() -> None:
    # Buying and selling on top of other holdings can undershoot by a few ulps, never more.
    portfolio = Portfolio("a", {Asset.XRP: 1000.0})
    portfolio.apply_fill(_fill("XRP/USDT", Side.SELL, 1000.0 + 1e-10, 0.5, 0.0, Asset.USDT))
    assert portfolio.balance(Asset.XRP) == 0.0


def _loan_fill(side: Side, qty: float, price: float, loan: float, loan_asset: Asset) -> Fill:
    return Fill(
        fill_id="f", order_id="o", account="a", time=T0, symbol="XRP/USDT", side=side, quantity=qty,
        price=price, fee=0.0, fee_asset=Asset.USDT, loan_change=loan, loan_asset=loan_asset,
    )


def test_loans_are_liabilities_in_equity_and_snapshot() -> None:
    portfolio = Portfolio("a", {Asset.USDT: 100.0})
    portfolio.apply_fill(_loan_fill(Side.BUY, 300.0, 0.5, 50.0, Asset.USDT))  # 150 notional, 2x
    assert portfolio.balance(Asset.USDT) == pytest.approx(0.0)
    assert portfolio.liabilities == {Asset.USDT: 50.0, Asset.XRP: 0.0, Asset.BTC: 0.0}
    assert portfolio.equity_usdt(PRICES) == pytest.approx(300 * 0.5 - 50.0)
    assert portfolio.snapshot(T0, PRICES).liabilities == {Asset.USDT: 50.0}
    portfolio.apply_fill(_loan_fill(Side.SELL, 300.0, 0.6, -50.0, Asset.USDT))  # proceeds repay the loan
    assert portfolio.liabilities[Asset.USDT] == 0.0
    assert portfolio.balance(Asset.USDT) == pytest.approx(180.0 - 50.0)


def test_repaying_more_than_owed_or_held_changes_nothing() -> None:
    portfolio = Portfolio("a", {Asset.USDT: 10.0, Asset.XRP: 10.0})
    with pytest.raises(InsufficientBalanceError):
        portfolio.apply_fill(_loan_fill(Side.SELL, 1.0, 0.5, -5.0, Asset.USDT))  # no loan to repay
    with pytest.raises(ValueError):
        portfolio.apply_fill(_loan_fill(Side.SELL, 1.0, 0.5, 5.0, Asset.BTC))  # loan in a foreign asset
    assert portfolio.balances == {Asset.USDT: 10.0, Asset.XRP: 10.0, Asset.BTC: 0.0}
    assert not any(portfolio.liabilities.values())
