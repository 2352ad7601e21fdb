"""Positions and their tracking.

Positions are spot: a LONG bought the base asset with quote; a SHORT sold base inventory the
account already holds and buys it back on exit (nothing is borrowed). PnL is in the quote
asset of the symbol. ``Position.fees`` holds the entry fee while open and both fees once closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.market import Side
from triplegain_core.orders import Fill, OrderPurpose
from triplegain_core.portfolio import MissingPriceError
from triplegain_core.signals import Direction

# Relative tolerance when matching an exit fill's quantity to the position's.
QUANTITY_TOLERANCE = 1e-9


class PositionStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Position(BaseModel):
    """One position of one account. PnL is in the quote asset of its symbol."""

    model_config = ConfigDict(frozen=True)

    position_id: str
    account: str
    symbol: str
    direction: Direction
    quantity: float = Field(gt=0.0)
    entry_price: float = Field(gt=0.0)
    stop_loss: float = Field(gt=0.0)
    take_profit: float = Field(gt=0.0)
    opened_at: datetime
    entry_notional_usdt: float
    equity_at_entry_usdt: float
    status: PositionStatus = PositionStatus.OPEN
    closed_at: datetime | None = None
    exit_price: float | None = None
    exit_reason: OrderPurpose | None = None
    realized_pnl: float = 0.0
    fees: float = 0.0

    @property
    def exit_side(self) -> Side:
        """The order side that closes this position."""
        return Side.SELL if self.direction is Direction.LONG else Side.BUY

    def gross_pnl(self, price: float) -> float:
        """PnL in quote at ``price``, before any fee."""
        move = price - self.entry_price
        return (move if self.direction is Direction.LONG else -move) * self.quantity


class PositionTracker:
    """The open positions of one account, in the order they were opened."""

    def __init__(self, account: str) -> None:
        self.account = account
        self._open: dict[str, Position] = {}

    def open(self, position: Position) -> None:
        """Start tracking an open position of this account."""
        if position.account != self.account:
            raise ValueError(f"position {position.position_id} is for {position.account}, not {self.account}")
        if position.status is not PositionStatus.OPEN:
            raise ValueError(f"position {position.position_id} is {position.status}, not open")
        if position.position_id in self._open:
            raise ValueError(f"position {position.position_id} is already open")
        self._open[position.position_id] = position

    def open_positions(self) -> list[Position]:
        """Every open position, oldest first."""
        return list(self._open.values())

    def get(self, position_id: str) -> Position:
        """The open position with this id (KeyError when none is open)."""
        return self._open[position_id]

    def open_for(self, symbol: str) -> Position | None:
        """The oldest open position on ``symbol``, if any."""
        return next((p for p in self._open.values() if p.symbol == symbol), None)

    def exits_triggered(
        self, symbol: str, low: float, high: float
    ) -> list[tuple[Position, OrderPurpose, float]]:
        """Open positions on ``symbol`` whose stop or take-profit lies in ``[low, high]``.

        Each comes with the rule that fired and its level. When a range touches both, the
        stop wins: without the path inside the range, assuming the loss is the safe side.
        Pass a single trade price as ``low == high``.
        """
        triggered = []
        for position in self._open.values():
            if position.symbol != symbol:
                continue
            if position.direction is Direction.LONG:
                stop_hit, tp_hit = low <= position.stop_loss, high >= position.take_profit
            else:
                stop_hit, tp_hit = high >= position.stop_loss, low <= position.take_profit
            if stop_hit:
                triggered.append((position, OrderPurpose.STOP_LOSS, position.stop_loss))
            elif tp_hit:
                triggered.append((position, OrderPurpose.TAKE_PROFIT, position.take_profit))
        return triggered

    def close(self, position_id: str, exit_fill: Fill, reason: OrderPurpose) -> Position:
        """Close an open position with its exit fill; return the closed position.

        realized_pnl = gross move * quantity - entry fee - exit fee, in the quote asset.
        """
        position = self._open[position_id]
        if exit_fill.symbol != position.symbol or exit_fill.side is not position.exit_side:
            raise ValueError(
                f"fill {exit_fill.fill_id} ({exit_fill.side} {exit_fill.symbol}) cannot close "
                f"{position.direction} {position.symbol} position {position_id}"
            )
        if abs(exit_fill.quantity - position.quantity) > QUANTITY_TOLERANCE * position.quantity:
            raise ValueError(
                f"fill {exit_fill.fill_id} quantity {exit_fill.quantity} != position quantity {position.quantity}"
            )
        fees = position.fees + exit_fill.fee
        closed = position.model_copy(
            update={
                "status": PositionStatus.CLOSED,
                "closed_at": exit_fill.time,
                "exit_price": exit_fill.price,
                "exit_reason": reason,
                "realized_pnl": position.gross_pnl(exit_fill.price) - fees,
                "fees": fees,
            }
        )
        del self._open[position_id]
        return closed

    def unrealized_pnl(self, prices: Mapping[str, float]) -> dict[str, float]:
        """Mark-to-market PnL per open position id, net of the entry fee already paid.

        The exit fee is not deducted: it is not yet owed. Raises MissingPriceError when an
        open position's symbol has no price.
        """
        result = {}
        for position in self._open.values():
            price = prices.get(position.symbol)
            if price is None:
                raise MissingPriceError(f"no {position.symbol} price for position {position.position_id}")
            result[position.position_id] = position.gross_pnl(price) - position.fees
        return result
