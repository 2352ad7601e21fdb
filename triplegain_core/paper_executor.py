"""Paper execution: market orders filled against a reference price with slippage and fees."""

from __future__ import annotations

from triplegain_core.market import INSTRUMENTS, Side
from triplegain_core.orders import Fill, Order
from triplegain_core.portfolio import Portfolio


class PaperExecutor:
    """Fills every order at once, at the reference price moved against the taker.

    ``slippage`` is the fraction the fill price moves against the order; ``fee_rate`` the
    fraction of the notional charged in the quote asset.
    """

    def __init__(self, fee_rate: float = 0.001, slippage: float = 0.0005) -> None:
        if not 0.0 <= fee_rate < 1.0 or not 0.0 <= slippage < 1.0:
            raise ValueError(f"fee_rate and slippage must be in [0, 1), got {fee_rate}, {slippage}")
        self.fee_rate = fee_rate
        self.slippage = slippage

    def worst_fill_price(self, side: Side, reference_price: float) -> float:
        """The price a market order on ``side`` fills at: above the reference to buy, below to sell."""
        if side is Side.BUY:
            return reference_price * (1.0 + self.slippage)
        return reference_price * (1.0 - self.slippage)

    def execute(self, order: Order, reference_price: float, portfolio: Portfolio) -> Fill:
        """Fill ``order`` and apply it to ``portfolio``.

        Raises InsufficientBalanceError (nothing filled, portfolio unchanged) when the
        account cannot pay for it. The fill id derives from the order id, so a replay
        produces the same fill.
        """
        if reference_price <= 0.0:
            raise ValueError(f"reference price must be > 0, got {reference_price}")
        price = self.worst_fill_price(order.side, reference_price)
        fill = Fill(
            fill_id=f"{order.order_id}:fill",
            order_id=order.order_id,
            account=order.account,
            time=order.time,
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            price=price,
            fee=self.fee_rate * order.quantity * price,
            fee_asset=INSTRUMENTS[order.symbol].quote,
        )
        portfolio.apply_fill(fill)
        return fill
