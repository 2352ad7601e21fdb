"""Paper execution: orders filled by the fill model (the order book when there is one, else a
reference price with a fixed slippage); fees in the quote asset; loans for leverage."""

from __future__ import annotations

import math

from triplegain_core.marketdata.fill_model import FillModel, within_limit
from triplegain_core.marketdata.snapshot import BookTop
from triplegain_core.model.market import INSTRUMENTS, Side
from triplegain_core.model.orders import Fill, Order, OrderPurpose, OrderType
from triplegain_core.portfolio.balances import Portfolio


class UnfillableOrderError(ValueError):
    """Nothing of the order can fill within its limit price; the portfolio is unchanged."""


class PaperExecutor:
    """Fills orders at once, as a taker, at the prices of its :class:`FillModel`.

    A LIMIT order takes only what fills at its price or better (the rest is not filled: IOC
    price protection).
    """

    def __init__(self, fee_rate: float = 0.001, slippage: float = 0.0005) -> None:
        self.fill_model = FillModel(fee_rate=fee_rate, slippage=slippage)

    def execute(
        self, order: Order, reference_price: float, portfolio: Portfolio, book: BookTop | None = None
    ) -> Fill:
        """Fill ``order`` (all of it, or what its limit allows) and apply it to ``portfolio``.

        Raises InsufficientBalanceError (nothing filled, portfolio unchanged) when the
        account cannot pay for it, UnfillableOrderError when nothing fills within the limit.
        The fill id derives from the order id, so a replay produces the same fill.
        """
        if not (math.isfinite(reference_price) and reference_price > 0.0):
            raise ValueError(f"reference price must be finite and > 0, got {reference_price}")
        limit = order.limit_price if order.order_type is OrderType.LIMIT else None
        if book is not None:
            if book.symbol != order.symbol:
                raise ValueError(f"book of {book.symbol} cannot fill a {order.symbol} order")
            quantity, price = self.fill_model.book_fill(order.side, order.quantity, book, limit)
        else:
            quantity, price = order.quantity, self.fill_model.worst_fill_price(order.side, reference_price)
            if not within_limit(order.side, price, limit):
                quantity = 0.0
        if quantity <= 0.0:
            raise UnfillableOrderError(f"order {order.order_id}: nothing fills within limit {limit}")
        instrument = INSTRUMENTS[order.symbol]
        loan_change, loan_asset = 0.0, None
        if order.purpose is OrderPurpose.ENTRY and order.leverage > 1.0:
            # A long borrows the quote its own margin does not cover; a short borrows the base it sells.
            if order.side is Side.BUY:
                loan_change, loan_asset = quantity * price * (1.0 - 1.0 / order.leverage), instrument.quote
            else:
                loan_change, loan_asset = quantity, instrument.base
        elif order.repay_loan > 0.0:
            loan_change = -order.repay_loan
            loan_asset = instrument.base if order.side is Side.BUY else instrument.quote
        fill = Fill(
            fill_id=f"{order.order_id}:fill",
            order_id=order.order_id,
            account=order.account,
            time=order.time,
            symbol=order.symbol,
            side=order.side,
            quantity=quantity,
            price=price,
            fee=self.fill_model.fee_rate * quantity * price,
            fee_asset=instrument.quote,
            loan_change=loan_change,
            loan_asset=loan_asset,
        )
        portfolio.apply_fill(fill)
        return fill

