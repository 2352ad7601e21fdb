"""Paper execution: orders filled against the order book when there is one, else against a
reference price with a fixed slippage; fees in the quote asset; loans for leverage."""

from __future__ import annotations

import math

from triplegain_core.marketdata.snapshot import BookLevel, BookTop
from triplegain_core.model.market import INSTRUMENTS, Side
from triplegain_core.model.orders import Fill, Order, OrderPurpose, OrderType
from triplegain_core.portfolio.balances import Portfolio


class UnfillableOrderError(ValueError):
    """Nothing of the order can fill within its limit price; the portfolio is unchanged."""


class PaperExecutor:
    """Fills orders at once, as a taker.

    With a book, a market order walks the levels of the opposite side and fills at the
    quantity-weighted average price of the levels it takes; what the book's top levels
    cannot hold fills at the last level moved by ``slippage`` (the unseen depth is assumed
    worse, never better). Without a book, it fills at the reference price moved by
    ``slippage`` against the taker. A LIMIT order takes only what fills at its price or
    better (the rest is not filled: IOC price protection). ``fee_rate`` is the fraction of
    the notional charged in the quote asset.
    """

    def __init__(self, fee_rate: float = 0.001, slippage: float = 0.0005) -> None:
        if not 0.0 <= fee_rate < 1.0 or not 0.0 <= slippage < 1.0:
            raise ValueError(f"fee_rate and slippage must be in [0, 1), got {fee_rate}, {slippage}")
        self.fee_rate = fee_rate
        self.slippage = slippage

    def worst_fill_price(self, side: Side, reference_price: float) -> float:
        """The price a market order on ``side`` fills at without a book."""
        if side is Side.BUY:
            return reference_price * (1.0 + self.slippage)
        return reference_price * (1.0 - self.slippage)

    def book_fill(
        self, side: Side, quantity: float, book: BookTop, limit_price: float | None = None
    ) -> tuple[float, float]:
        """(filled quantity, average price) of taking ``quantity`` from ``book`` on ``side``.

        Levels beyond ``limit_price`` are not taken; the filled quantity is then smaller.
        """
        levels: tuple[BookLevel, ...] = book.asks if side is Side.BUY else book.bids
        remaining, cost = quantity, 0.0
        for level in levels:
            if remaining <= 0.0 or not _within(side, level.price, limit_price):
                break
            take = min(remaining, level.qty)
            cost += take * level.price
            remaining -= take
        if remaining > 0.0:
            beyond = self.worst_fill_price(side, levels[-1].price)
            if _within(side, beyond, limit_price):
                cost += remaining * beyond
                remaining = 0.0
        filled = quantity - remaining
        return filled, (cost / filled if filled > 0.0 else math.nan)

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
            quantity, price = self.book_fill(order.side, order.quantity, book, limit)
        else:
            quantity, price = order.quantity, self.worst_fill_price(order.side, reference_price)
            if not _within(order.side, price, limit):
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
            fee=self.fee_rate * quantity * price,
            fee_asset=instrument.quote,
            loan_change=loan_change,
            loan_asset=loan_asset,
        )
        portfolio.apply_fill(fill)
        return fill


def _within(side: Side, price: float, limit: float | None) -> bool:
    if limit is None:
        return True
    return price <= limit if side is Side.BUY else price >= limit
