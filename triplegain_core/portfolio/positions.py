"""Positions and their tracking: PnL, stops, trailing stops, invalidation, holding time.

At leverage 1 a position is spot: a LONG bought the base asset with quote; a SHORT sold base
inventory the account already holds and buys it back on exit. With leverage > 1 it carries a
``loan`` in ``loan_asset`` (quote for a LONG, base for a SHORT; see ``Portfolio``), repaid by
its exit. PnL is in the quote asset of the symbol (``realized_pnl_usdt`` in USDT once closed).
``Position.fees`` holds the entry fee while open and both fees once closed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.model.market import Asset, Side
from triplegain_core.model.orders import Fill, OrderPurpose
from triplegain_core.model.signals import Direction
from triplegain_core.portfolio.balances import MissingPriceError

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
    strategy: str | None = None
    leverage: float = Field(default=1.0, ge=1.0)
    loan: float = Field(default=0.0, ge=0.0)
    loan_asset: Asset | None = None
    initial_stop: float | None = None
    trailing_active: bool = False
    best_price: float | None = None
    invalidation: float | None = None
    max_holding_until: datetime | None = None
    realized_pnl_usdt: float | None = None
    # When the market reached the exit's level, for an exit seen only later (the executor could
    # not read the market then): it filled at the first price seen after, at ``closed_at``.
    exit_crossed_at: datetime | None = None

    @property
    def exit_side(self) -> Side:
        """The order side that closes this position."""
        return Side.SELL if self.direction is Direction.LONG else Side.BUY

    @property
    def risk_per_unit(self) -> float:
        """R: the distance from the entry price to the initial stop, per unit."""
        return abs(self.entry_price - (self.initial_stop or self.stop_loss))

    def gross_pnl(self, price: float) -> float:
        """PnL in quote at ``price``, before any fee."""
        move = price - self.entry_price
        return (move if self.direction is Direction.LONG else -move) * self.quantity


class ExitTrigger(NamedTuple):
    """An exit rule that fired: the position, the rule, and the price level it fired at
    (None: at market, i.e. at the current price)."""

    position: Position
    purpose: OrderPurpose
    level: float | None


# A condition on an open position over a price range (low, high): True closes it.
InvalidationCondition = Callable[[Position, float, float], bool]


class PositionTracker:
    """The open positions of one account, in the order they were opened.

    Exits it watches: stop-loss (trailing once the position has run ``trailing_activation_r``
    times its initial risk R, at ``trailing_distance_r`` R behind the best price), the
    invalidation level and condition, take-profit, and the maximum holding time.
    """

    def __init__(
        self, account: str, trailing_activation_r: float = 1.5, trailing_distance_r: float = 1.0
    ) -> None:
        if trailing_activation_r <= 0 or trailing_distance_r <= 0:
            raise ValueError("trailing activation and distance must be > 0 (in units of R)")
        self.account = account
        self.trailing_activation_r = trailing_activation_r
        self.trailing_distance_r = trailing_distance_r
        self._open: dict[str, Position] = {}
        # The same positions by symbol (each in opening order): exits are watched per symbol,
        # on every candle and tick.
        self._by_symbol: dict[str, dict[str, Position]] = {}
        self._conditions: dict[str, InvalidationCondition] = {}
        self.changes = 0
        """How many positions were opened or closed so far (what a watcher compares)."""

    def open(self, position: Position, condition: InvalidationCondition | None = None) -> Position:
        """Start tracking an open position of this account; returns it as tracked.

        ``condition`` (optional, not persisted) closes the position at market when it
        returns True for the position over a price range.
        """
        if position.account != self.account:
            raise ValueError(f"position {position.position_id} is for {position.account}, not {self.account}")
        if position.status is not PositionStatus.OPEN:
            raise ValueError(f"position {position.position_id} is {position.status}, not open")
        if position.position_id in self._open:
            raise ValueError(f"position {position.position_id} is already open")
        tracked = position.model_copy(update={
            "initial_stop": position.initial_stop or position.stop_loss,
            "best_price": position.best_price or position.entry_price,
        })
        self._open[position.position_id] = tracked
        self._by_symbol.setdefault(tracked.symbol, {})[tracked.position_id] = tracked
        self.changes += 1
        if condition is not None:
            self._conditions[position.position_id] = condition
        return tracked

    def export_state(self) -> tuple[Position, ...]:
        """The open positions with their stops, trailing state and limits, oldest first.

        An invalidation condition (a callable) is not part of it: it is not persisted either."""
        return tuple(self._open.values())

    def import_state(self, positions: Sequence[Position]) -> None:
        """Track exactly ``positions`` (a checkpoint's open positions, oldest first)."""
        self._open, self._by_symbol, self._conditions = {}, {}, {}
        self.changes += 1
        for position in positions:
            self.open(position)

    @property
    def open_count(self) -> int:
        """How many positions are open."""
        return len(self._open)

    def open_positions(self) -> list[Position]:
        """Every open position, oldest first."""
        return list(self._open.values())

    def get(self, position_id: str) -> Position:
        """The open position with this id (KeyError when none is open)."""
        return self._open[position_id]

    def holds(self, symbol: str) -> bool:
        """Whether a position on ``symbol`` is open."""
        return symbol in self._by_symbol

    def open_for(self, symbol: str) -> Position | None:
        """The oldest open position on ``symbol``, if any."""
        held = self._by_symbol.get(symbol)
        return next(iter(held.values())) if held else None

    def exits_triggered(
        self, symbol: str, low: float, high: float, now: datetime | None = None, first: float | None = None
    ) -> list[ExitTrigger]:
        """Open positions on ``symbol`` that an exit rule closes over the range ``[low, high]``.

        One rule per position, the first that applies of: stop (or trailing stop),
        invalidation level, take-profit, invalidation condition, maximum holding time (at
        ``now``). The stop wins over the take-profit when a range touches both: without the
        path inside the range, assuming the loss is the safe side; but a range that opened
        (``first``, a candle's open) already at or beyond the take-profit took it first. Pass
        a single trade price as ``low == high``.
        """
        held = self._by_symbol.get(symbol)
        if not held:
            return []
        triggered = []
        for position in held.values():
            trigger = self._opened_at_target(position, first) or self._exit_rule(position, low, high, now)
            if trigger is not None:
                triggered.append(trigger)
        return triggered

    @staticmethod
    def _opened_at_target(position: Position, first: float | None) -> ExitTrigger | None:
        """The take-profit, when the range's first price already reached it (so before any stop)."""
        if first is None:
            return None
        reached = first >= position.take_profit if position.direction is Direction.LONG else \
            first <= position.take_profit
        return ExitTrigger(position, OrderPurpose.TAKE_PROFIT, position.take_profit) if reached else None

    def _exit_rule(self, position: Position, low: float, high: float, now: datetime | None) -> ExitTrigger | None:
        # Written out per direction: this runs for every open position on every candle and tick.
        invalidation = position.invalidation
        if position.direction is Direction.LONG:
            if low <= position.stop_loss:
                return ExitTrigger(position, _stop_purpose(position), position.stop_loss)
            if invalidation is not None and low <= invalidation:
                return ExitTrigger(position, OrderPurpose.INVALIDATION, invalidation)
            if high >= position.take_profit:
                return ExitTrigger(position, OrderPurpose.TAKE_PROFIT, position.take_profit)
        else:
            if high >= position.stop_loss:
                return ExitTrigger(position, _stop_purpose(position), position.stop_loss)
            if invalidation is not None and high >= invalidation:
                return ExitTrigger(position, OrderPurpose.INVALIDATION, invalidation)
            if low <= position.take_profit:
                return ExitTrigger(position, OrderPurpose.TAKE_PROFIT, position.take_profit)
        condition = self._conditions.get(position.position_id) if self._conditions else None
        if condition is not None and condition(position, low, high):
            return ExitTrigger(position, OrderPurpose.INVALIDATION, None)
        if now is not None and position.max_holding_until is not None and now >= position.max_holding_until:
            return ExitTrigger(position, OrderPurpose.MAX_HOLDING, None)
        return None

    def trail(self, symbol: str, low: float, high: float) -> list[Position]:
        """Move trailing stops on ``symbol`` after the price ranged over ``[low, high]``.

        Call after :meth:`exits_triggered` for the same range, so a stop moved by this range
        is only tested against the next one. Returns the positions whose stop moved (the
        stop only ever moves in the position's favour).
        """
        held = self._by_symbol.get(symbol)
        if not held:
            return []
        moved = []
        activation, distance = self.trailing_activation_r, self.trailing_distance_r
        for position_id, position in held.items():
            long = position.direction is Direction.LONG
            known = position.best_price or position.entry_price
            best = (high if high > known else known) if long else (low if low < known else known)
            entry = position.entry_price
            risk = abs(entry - (position.initial_stop or position.stop_loss))
            stop = None
            if risk > 0 and ((best - entry) if long else (entry - best)) >= activation * risk:
                stop = best - distance * risk if long else best + distance * risk
                if not ((stop > position.stop_loss) if long else (stop < position.stop_loss)):
                    stop = None
            if best == position.best_price and stop is None:
                continue  # most ticks set no new best price: nothing to copy
            update: dict[str, object] = {"best_price": best}
            if stop is not None:
                update.update({"stop_loss": stop, "trailing_active": True})
            # Replacing a value (not a key) while iterating is safe.
            held[position_id] = self._open[position_id] = position.model_copy(update=update)
            if stop is not None:
                moved.append(held[position_id])
        return moved

    def close(
        self, position_id: str, exit_fill: Fill, reason: OrderPurpose, quote_usdt: float | None = None,
        crossed_at: datetime | None = None,
    ) -> Position:
        """Close an open position with its exit fill; return the closed position.

        realized_pnl = gross move * quantity - entry fee - exit fee, in the quote asset;
        ``quote_usdt`` (the quote asset's USDT price at the exit) also values it in USDT;
        ``crossed_at`` is when the market reached the exit, for an exit seen only later.
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
        realized = position.gross_pnl(exit_fill.price) - fees
        closed = position.model_copy(
            update={
                "status": PositionStatus.CLOSED,
                "closed_at": exit_fill.time,
                "exit_price": exit_fill.price,
                "exit_reason": reason,
                "realized_pnl": realized,
                "realized_pnl_usdt": None if quote_usdt is None else realized * quote_usdt,
                "fees": fees,
                "loan": 0.0,
                "exit_crossed_at": crossed_at,
            }
        )
        del self._open[position_id]
        held = self._by_symbol[position.symbol]
        del held[position_id]
        if not held:
            del self._by_symbol[position.symbol]
        self._conditions.pop(position_id, None)
        self.changes += 1
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


def _stop_purpose(position: Position) -> OrderPurpose:
    return OrderPurpose.TRAILING_STOP if position.trailing_active else OrderPurpose.STOP_LOSS


def holding_deadline(opened_at: datetime, max_holding_s: float | None) -> datetime | None:
    """When a position opened at ``opened_at`` must be closed, or None for no limit."""
    if max_holding_s is None:
        return None
    return opened_at + timedelta(seconds=max_holding_s)
