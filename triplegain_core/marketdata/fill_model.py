"""How a taker order fills: against the book's levels when there is a book, else at a
reference price moved by a fixed slippage against the taker; the fee is a fraction of the
notional. The paper executor fills with it and the risk rules size with it, so an approved
size is priced exactly as it will fill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from triplegain_core.marketdata.snapshot import BookTop
from triplegain_core.model.market import BookLevel, Side


@dataclass(frozen=True, slots=True)
class FillModel:
    """Taker fill prices. With a book, a market order walks the levels of the opposite side
    and fills at the quantity-weighted average price of the levels it takes; what the book's
    top levels cannot hold fills at the last level moved by ``slippage`` (the unseen depth is
    assumed worse, never better). Without a book, it fills at the reference price moved by
    ``slippage``. ``fee_rate`` is the fraction of the notional charged in the quote asset.
    """

    fee_rate: float = 0.001
    slippage: float = 0.0005

    def __post_init__(self) -> None:
        if not 0.0 <= self.fee_rate < 1.0 or not 0.0 <= self.slippage < 1.0:
            raise ValueError(f"fee_rate and slippage must be in [0, 1), got {self.fee_rate}, {self.slippage}")

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
            if remaining <= 0.0 or not within_limit(side, level.price, limit_price):
                break
            take = min(remaining, level.qty)
            cost += take * level.price
            remaining -= take
        if remaining > 0.0:
            beyond = self.worst_fill_price(side, levels[-1].price)
            if within_limit(side, beyond, limit_price):
                cost += remaining * beyond
                remaining = 0.0
        filled = quantity - remaining
        return filled, (cost / filled if filled > 0.0 else math.nan)


def within_limit(side: Side, price: float, limit: float | None) -> bool:
    """Whether a taker on ``side`` accepts ``price`` under ``limit`` (None: any price)."""
    if limit is None:
        return True
    return price <= limit if side is Side.BUY else price >= limit
