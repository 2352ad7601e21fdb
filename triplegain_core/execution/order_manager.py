"""The OrderManager: client order ids, order states, create / modify / cancel, execution.

One manager per account. Every order is known by its client order id: submitting the same
id again returns the order already there (one order, never two). Each state change is an
:class:`OrderEvent`, kept in order and handed to the audit trail by :meth:`drain_events`.

States: NEW (accepted, not yet worked) -> OPEN (resting: GTC limit or stop) ->
PARTIALLY_FILLED -> FILLED; or CANCELLED / REJECTED. FILLED, CANCELLED, REJECTED are final.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.execution.paper import PaperExecutor, UnfillableOrderError
from triplegain_core.marketdata.snapshot import BookTop
from triplegain_core.model.market import Side
from triplegain_core.model.orders import (
    FINAL_STATES,
    Fill,
    Order,
    OrderEvent,
    OrderState,
    OrderType,
    TimeInForce,
)
from triplegain_core.portfolio.balances import InsufficientBalanceError, Portfolio

log = logging.getLogger(__name__)

# Relative tolerance when deciding that the fills of an order add up to its quantity.
_FILLED_TOLERANCE = 1e-9


class OrderError(ValueError):
    """An order operation that cannot be done (unknown id, final state, conflicting resend)."""


class ManagedOrder(BaseModel):
    """An order with its current state and what has filled of it."""

    model_config = ConfigDict(frozen=True)

    order: Order
    state: OrderState
    filled_quantity: float = Field(default=0.0, ge=0.0)
    average_price: float | None = None
    fill_ids: tuple[str, ...] = ()

    @property
    def remaining(self) -> float:
        """Quantity not yet filled."""
        return max(0.0, self.order.quantity - self.filled_quantity)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


class OrderBookState(BaseModel):
    """What an :class:`OrderManager` must remember across a restart: its working orders with
    their state changes so far (the final ones are in the audit trail), and its counter."""

    model_config = ConfigDict(frozen=True)

    working: tuple[ManagedOrder, ...] = ()
    history: dict[str, tuple[OrderEvent, ...]] = Field(default_factory=dict)
    duplicate_submissions: int = 0


class OrderManager:
    """Keeps the orders of one account and moves them through their states."""

    def __init__(self, account: str) -> None:
        self.account = account
        self._orders: dict[str, ManagedOrder] = {}
        self._history: dict[str, list[OrderEvent]] = {}
        self._pending: list[OrderEvent] = []
        self.duplicate_submissions = 0

    def export_state(self) -> OrderBookState:
        """The working orders and their histories (see :meth:`import_state`)."""
        working = tuple(self.open_orders())
        return OrderBookState(working=working,
                              history={m.order.order_id: tuple(self._history[m.order.order_id]) for m in working},
                              duplicate_submissions=self.duplicate_submissions)

    def import_state(self, state: OrderBookState) -> None:
        """Keep exactly the working orders of a checkpoint, their histories continuing."""
        self._orders = {m.order.order_id: m for m in state.working}
        self._history = {order_id: list(state.history.get(order_id, ())) for order_id in self._orders}
        self._pending = []
        self.duplicate_submissions = state.duplicate_submissions

    def submit(self, order: Order) -> ManagedOrder:
        """Accept ``order`` under its client order id; a resend of the same order is a no-op.

        Raises OrderError when the id is already used by a different order or the order is
        for another account. GTC limit and stop orders rest (OPEN); the rest wait in NEW for
        :meth:`execute`.
        """
        if order.account != self.account:
            raise OrderError(f"order {order.order_id} is for {order.account}, not {self.account}")
        known = self._orders.get(order.order_id)
        if known is not None:
            if known.order != order:
                raise OrderError(f"client order id {order.order_id} is already used by a different order")
            self.duplicate_submissions += 1
            return known
        self._orders[order.order_id] = ManagedOrder(order=order, state=OrderState.NEW)
        self._history[order.order_id] = []
        self._event(order.order_id, order.time, OrderState.NEW, "submitted")
        if order.order_type is not OrderType.MARKET and order.time_in_force is TimeInForce.GTC:
            self._move(order.order_id, order.time, OrderState.OPEN, "resting")
        return self._orders[order.order_id]

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def get(self, order_id: str) -> ManagedOrder:
        """The order with this client id (OrderError when unknown)."""
        try:
            return self._orders[order_id]
        except KeyError:
            raise OrderError(f"unknown client order id {order_id}") from None

    def history(self, order_id: str) -> list[OrderEvent]:
        """Every state change of the order, oldest first."""
        self.get(order_id)
        return list(self._history[order_id])

    def open_orders(self, symbol: str | None = None) -> list[ManagedOrder]:
        """Orders not in a final state (on ``symbol`` when given), oldest first."""
        return [m for m in self._orders.values() if not m.is_final and symbol in (None, m.order.symbol)]

    def modify(
        self,
        order_id: str,
        now: datetime,
        *,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> ManagedOrder:
        """Change the quantity or price of a working order; the id stays the same.

        The quantity may not go below what has already filled; prices must be finite and
        > 0. Raises OrderError otherwise, or when the order is final.
        """
        managed = self._working(order_id)
        update: dict[str, float] = {}
        if quantity is not None:
            if not (math.isfinite(quantity) and quantity > 0) or quantity < managed.filled_quantity:
                raise OrderError(f"order {order_id}: quantity {quantity} is invalid or below the filled "
                                 f"{managed.filled_quantity}")
            update["quantity"] = quantity
        for name, price in (("limit_price", limit_price), ("stop_price", stop_price)):
            if price is not None:
                if not (math.isfinite(price) and price > 0):
                    raise OrderError(f"order {order_id}: {name} {price} must be finite and > 0")
                update[name] = price
        if not update:
            return managed
        order = Order.model_validate({**managed.order.model_dump(), **update})
        self._orders[order_id] = managed.model_copy(update={"order": order})
        detail = ", ".join(f"{key}={value}" for key, value in update.items())
        self._event(order_id, now, self._orders[order_id].state, f"modified: {detail}")
        if math.isclose(self._orders[order_id].filled_quantity, order.quantity, rel_tol=_FILLED_TOLERANCE):
            self._move(order_id, now, OrderState.FILLED, "filled by the reduced quantity")
        return self._orders[order_id]

    def cancel(self, order_id: str, now: datetime, reason: str = "cancelled") -> ManagedOrder:
        """Cancel a working order (what has filled stays filled)."""
        self._working(order_id)
        self._move(order_id, now, OrderState.CANCELLED, reason)
        return self._orders[order_id]

    def reject(self, order_id: str, now: datetime, reason: str) -> ManagedOrder:
        """Mark a working order as refused (by the venue or the paper account)."""
        self._working(order_id)
        self._move(order_id, now, OrderState.REJECTED, reason)
        return self._orders[order_id]

    def apply_fill(self, fill: Fill) -> ManagedOrder:
        """Account for one fill of a working order; a fill seen before is ignored."""
        managed = self.get(fill.order_id)
        if fill.fill_id in managed.fill_ids:
            return managed
        self._working(fill.order_id)
        if fill.quantity > managed.remaining * (1 + _FILLED_TOLERANCE):
            raise OrderError(f"fill {fill.fill_id} of {fill.quantity} exceeds the {managed.remaining} remaining")
        filled = managed.filled_quantity + fill.quantity
        paid = (managed.average_price or 0.0) * managed.filled_quantity + fill.price * fill.quantity
        self._orders[fill.order_id] = managed.model_copy(update={
            "filled_quantity": filled, "average_price": paid / filled, "fill_ids": (*managed.fill_ids, fill.fill_id),
        })
        complete = math.isclose(filled, managed.order.quantity, rel_tol=_FILLED_TOLERANCE)
        state = OrderState.FILLED if complete else OrderState.PARTIALLY_FILLED
        self._move(fill.order_id, fill.time, state, f"fill {fill.fill_id}: {fill.quantity} @ {fill.price}")
        return self._orders[fill.order_id]

    def triggered(self, symbol: str, low: float, high: float) -> list[ManagedOrder]:
        """Resting orders on ``symbol`` whose limit or stop price the range ``[low, high]`` reached."""
        hits = []
        for managed in self.open_orders(symbol):
            order = managed.order
            if order.order_type is OrderType.LIMIT and order.limit_price is not None:
                hit = low <= order.limit_price if order.side is Side.BUY else high >= order.limit_price
            elif order.order_type is OrderType.STOP and order.stop_price is not None:
                hit = high >= order.stop_price if order.side is Side.BUY else low <= order.stop_price
            else:
                continue
            if hit:
                hits.append(managed)
        return hits

    def execute(
        self,
        order_id: str,
        executor: PaperExecutor,
        reference_price: float,
        portfolio: Portfolio,
        book: BookTop | None = None,
    ) -> Fill | None:
        """Work a submitted order now on the paper executor; the fill, or None if nothing filled.

        A refusal by the account (balance) rejects the order; nothing within the limit
        cancels it; an IOC order that filled in part has its rest cancelled. Nothing raises
        for those: the states record what happened.
        """
        managed = self._working(order_id)
        order = managed.order
        if managed.filled_quantity > 0:
            order = order.model_copy(update={"quantity": managed.remaining})
        try:
            fill = executor.execute(order, reference_price, portfolio, book)
        except InsufficientBalanceError as exc:
            self.reject(order_id, order.time, f"insufficient balance: {exc}")
            log.warning("order %s rejected: %s", order_id, exc)
            return None
        except UnfillableOrderError as exc:
            self.cancel(order_id, order.time, f"unfillable: {exc}")
            return None
        except ValueError as exc:
            # A price or book that cannot fill this order (not finite, another symbol).
            self.reject(order_id, order.time, f"invalid execution input: {exc}")
            log.warning("order %s rejected: %s", order_id, exc)
            return None
        if managed.fill_ids:
            # Later fills of one order need ids of their own.
            fill = fill.model_copy(update={"fill_id": f"{fill.fill_id}:{len(managed.fill_ids)}"})
        self.apply_fill(fill)
        if not self._orders[order_id].is_final and order.time_in_force is TimeInForce.IOC:
            self.cancel(order_id, order.time, "IOC remainder cancelled")
        return fill

    def drain_events(self) -> list[OrderEvent]:
        """State changes since the last drain, in order (for the audit trail)."""
        events, self._pending = self._pending, []
        return events

    def _working(self, order_id: str) -> ManagedOrder:
        managed = self.get(order_id)
        if managed.is_final:
            raise OrderError(f"order {order_id} is {managed.state}: it can no longer change")
        return managed

    def _move(self, order_id: str, now: datetime, state: OrderState, detail: str) -> None:
        self._orders[order_id] = self._orders[order_id].model_copy(update={"state": state})
        self._event(order_id, now, state, detail)

    def _event(self, order_id: str, now: datetime, state: OrderState, detail: str) -> None:
        history = self._history[order_id]
        event = OrderEvent(
            order_id=order_id, seq=len(history), time=now, state=state,
            filled_quantity=self._orders[order_id].filled_quantity, detail=detail,
        )
        history.append(event)
        self._pending.append(event)
