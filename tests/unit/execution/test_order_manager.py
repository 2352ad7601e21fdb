"""OrderManager: idempotent client ids, states and their history, modify / cancel, execution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triplegain_core.execution.order_manager import OrderError, OrderManager
from triplegain_core.execution.paper import PaperExecutor
from triplegain_core.marketdata.snapshot import BookLevel, BookTop
from triplegain_core.model.market import Asset, Side
from triplegain_core.model.orders import Order, OrderPurpose, OrderState, OrderType, TimeInForce
from triplegain_core.portfolio.balances import Portfolio

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _order(order_id: str = "c1", **fields: object) -> Order:
    values = {"order_id": order_id, "account": "a", "time": T0, "symbol": "XRP/USDT", "side": Side.BUY,
              "quantity": 100.0, "purpose": OrderPurpose.ENTRY, "check_id": "chk", "position_id": "p1"}
    values.update(fields)
    return Order(**values)


def test_same_client_id_twice_is_one_order() -> None:
    manager = OrderManager("a")
    first = manager.submit(_order())
    second = manager.submit(_order())
    assert first == second and len(manager.open_orders()) == 1
    assert manager.duplicate_submissions == 1
    assert [e.state for e in manager.history("c1")] == [OrderState.NEW]
    with pytest.raises(OrderError, match="different order"):
        manager.submit(_order(quantity=5.0))
    with pytest.raises(OrderError):
        manager.submit(_order("c2", account="b"))


def test_market_order_executes_and_its_states_are_recorded() -> None:
    manager = OrderManager("a")
    portfolio = Portfolio("a", {Asset.USDT: 1000.0})
    manager.submit(_order())
    fill = manager.execute("c1", PaperExecutor(0.001, 0.0005), 0.5, portfolio)
    assert fill is not None and fill.quantity == 100.0
    managed = manager.get("c1")
    assert managed.state is OrderState.FILLED and managed.filled_quantity == 100.0
    assert managed.average_price == fill.price and managed.fill_ids == (fill.fill_id,)
    events = manager.drain_events()
    assert [(e.seq, e.state) for e in events] == [(0, OrderState.NEW), (1, OrderState.FILLED)]
    assert manager.drain_events() == []
    with pytest.raises(OrderError, match="filled"):
        manager.cancel("c1", T0)
    assert manager.apply_fill(fill) == managed  # a fill seen before changes nothing


def test_refused_order_is_rejected_not_raised() -> None:
    manager = OrderManager("a")
    manager.submit(_order(quantity=10_000.0))
    assert manager.execute("c1", PaperExecutor(), 0.5, Portfolio("a", {Asset.USDT: 10.0})) is None
    assert manager.get("c1").state is OrderState.REJECTED
    assert "insufficient balance" in manager.history("c1")[-1].detail
    manager.submit(_order("c2"))
    assert manager.execute("c2", PaperExecutor(), float("nan"), Portfolio("a", {Asset.USDT: 1000.0})) is None
    assert manager.get("c2").state is OrderState.REJECTED


def test_ioc_limit_partly_filled_then_the_rest_cancelled() -> None:
    book = BookTop("XRP/USDT", 0, bids=(BookLevel(0.49, 1000.0),), asks=(BookLevel(0.5, 60.0), BookLevel(0.52, 100.0)))
    manager = OrderManager("a")
    manager.submit(_order(order_type=OrderType.LIMIT, time_in_force=TimeInForce.IOC, limit_price=0.51))
    fill = manager.execute("c1", PaperExecutor(0.0, 0.0005), 0.5, Portfolio("a", {Asset.USDT: 1000.0}), book)
    assert fill is not None and fill.quantity == 60.0
    managed = manager.get("c1")
    assert managed.state is OrderState.CANCELLED and managed.filled_quantity == 60.0
    assert [e.state for e in manager.history("c1")] == [
        OrderState.NEW, OrderState.PARTIALLY_FILLED, OrderState.CANCELLED]


def test_resting_limit_modify_trigger_fill_and_cancel() -> None:
    manager = OrderManager("a")
    manager.submit(_order(order_type=OrderType.LIMIT, limit_price=0.45))
    manager.submit(_order("stop", side=Side.SELL, order_type=OrderType.STOP, stop_price=0.40, quantity=50.0))
    assert {m.state for m in manager.open_orders()} == {OrderState.OPEN}
    later = T0 + timedelta(minutes=1)
    manager.modify("c1", later, limit_price=0.47, quantity=80.0)
    assert manager.get("c1").order.limit_price == 0.47 and manager.get("c1").order.quantity == 80.0
    assert manager.history("c1")[-1].detail.startswith("modified")
    with pytest.raises(OrderError):
        manager.modify("c1", later, limit_price=float("nan"))
    assert manager.triggered("XRP/USDT", 0.48, 0.50) == []
    assert [m.order.order_id for m in manager.triggered("XRP/USDT", 0.46, 0.50)] == ["c1"]
    assert [m.order.order_id for m in manager.triggered("XRP/USDT", 0.39, 0.50)] == ["c1", "stop"]
    portfolio = Portfolio("a", {Asset.USDT: 1000.0})
    fill = manager.execute("c1", PaperExecutor(0.0, 0.0), 0.47, portfolio)
    assert fill is not None and fill.price == 0.47 and manager.get("c1").state is OrderState.FILLED
    manager.cancel("stop", later, "strategy changed its mind")
    assert manager.get("stop").state is OrderState.CANCELLED and manager.open_orders() == []


def test_modify_below_the_filled_quantity_is_refused() -> None:
    book = BookTop("XRP/USDT", 0, bids=(BookLevel(0.49, 1000.0),), asks=(BookLevel(0.5, 30.0), BookLevel(0.6, 100.0)))
    manager = OrderManager("a")
    manager.submit(_order(order_type=OrderType.LIMIT, limit_price=0.55))  # GTC: the rest keeps resting
    manager.execute("c1", PaperExecutor(0.0, 0.0), 0.5, Portfolio("a", {Asset.USDT: 1000.0}), book)
    assert manager.get("c1").state is OrderState.PARTIALLY_FILLED
    with pytest.raises(OrderError, match="below the filled"):
        manager.modify("c1", T0, quantity=10.0)
    done = manager.modify("c1", T0, quantity=30.0)
    assert done.state is OrderState.FILLED
    with pytest.raises(OrderError, match="unknown"):
        manager.get("nope")
