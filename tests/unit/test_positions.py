"""PositionTracker: exits, closing PnL and fees, unrealized PnL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from triplegain_core.market import Asset, Side
from triplegain_core.orders import Fill, OrderPurpose
from triplegain_core.portfolio import MissingPriceError
from triplegain_core.positions import Position, PositionStatus, PositionTracker
from triplegain_core.signals import Direction

T0 = datetime(2024, 1, 1, tzinfo=UTC)
T1 = datetime(2024, 1, 1, 1, tzinfo=UTC)


def _position(pid: str = "p1", direction: Direction = Direction.LONG, symbol: str = "XRP/USDT") -> Position:
    long = direction is Direction.LONG
    return Position(
        position_id=pid, account="a", symbol=symbol, direction=direction, quantity=100.0,
        entry_price=1.0, stop_loss=0.98 if long else 1.02, take_profit=1.04 if long else 0.96,
        opened_at=T0, entry_notional_usdt=100.0, equity_at_entry_usdt=1000.0, fees=0.1,
    )


def _fill(side: Side, price: float, qty: float = 100.0, fee: float = 0.2) -> Fill:
    return Fill(
        fill_id="x", order_id="o", account="a", time=T1, symbol="XRP/USDT", side=side,
        quantity=qty, price=price, fee=fee, fee_asset=Asset.USDT,
    )


def test_open_get_and_lookup() -> None:
    tracker = PositionTracker("a")
    tracker.open(_position("p1"))
    tracker.open(_position("p2", symbol="BTC/USDT"))
    assert [p.position_id for p in tracker.open_positions()] == ["p1", "p2"]
    assert tracker.get("p2").symbol == "BTC/USDT"
    assert tracker.open_for("XRP/USDT").position_id == "p1"
    assert tracker.open_for("XRP/BTC") is None
    with pytest.raises(ValueError):
        tracker.open(_position("p1"))
    with pytest.raises(ValueError):
        PositionTracker("b").open(_position())


@pytest.mark.parametrize(
    ("direction", "low", "high", "expected"),
    [
        (Direction.LONG, 0.99, 1.03, None),
        (Direction.LONG, 0.98, 1.0, (OrderPurpose.STOP_LOSS, 0.98)),
        (Direction.LONG, 1.0, 1.05, (OrderPurpose.TAKE_PROFIT, 1.04)),
        (Direction.LONG, 0.9, 1.1, (OrderPurpose.STOP_LOSS, 0.98)),  # both touched: stop first
        (Direction.SHORT, 0.97, 1.01, None),
        (Direction.SHORT, 1.0, 1.02, (OrderPurpose.STOP_LOSS, 1.02)),
        (Direction.SHORT, 0.95, 1.0, (OrderPurpose.TAKE_PROFIT, 0.96)),
        (Direction.SHORT, 0.9, 1.1, (OrderPurpose.STOP_LOSS, 1.02)),
        (Direction.LONG, 0.97, 0.97, (OrderPurpose.STOP_LOSS, 0.98)),  # a single tick past the stop
    ],
)
def test_exits_triggered(direction: Direction, low: float, high: float, expected: tuple | None) -> None:
    tracker = PositionTracker("a")
    tracker.open(_position(direction=direction))
    tracker.open(_position("other", symbol="BTC/USDT"))
    triggered = tracker.exits_triggered("XRP/USDT", low, high)
    if expected is None:
        assert triggered == []
    else:
        assert [(p.position_id, purpose, level) for p, purpose, level in triggered] == [("p1", *expected)]


def test_close_long_pnl_and_fees() -> None:
    tracker = PositionTracker("a")
    tracker.open(_position())
    closed = tracker.close("p1", _fill(Side.SELL, 1.04), OrderPurpose.TAKE_PROFIT)
    assert closed.status is PositionStatus.CLOSED
    assert closed.closed_at == T1 and closed.exit_price == 1.04
    assert closed.exit_reason is OrderPurpose.TAKE_PROFIT
    assert closed.fees == pytest.approx(0.3)
    assert closed.realized_pnl == pytest.approx(0.04 * 100 - 0.3)
    assert tracker.open_positions() == []
    with pytest.raises(KeyError):
        tracker.get("p1")


def test_close_short_pnl() -> None:
    tracker = PositionTracker("a")
    tracker.open(_position(direction=Direction.SHORT))
    closed = tracker.close("p1", _fill(Side.BUY, 1.02), OrderPurpose.STOP_LOSS)
    assert closed.realized_pnl == pytest.approx(-0.02 * 100 - 0.3)


def test_close_rejects_a_mismatched_fill() -> None:
    tracker = PositionTracker("a")
    tracker.open(_position())
    with pytest.raises(ValueError):
        tracker.close("p1", _fill(Side.BUY, 1.0), OrderPurpose.STOP_LOSS)
    with pytest.raises(ValueError):
        tracker.close("p1", _fill(Side.SELL, 1.0, qty=50.0), OrderPurpose.STOP_LOSS)
    assert tracker.get("p1").status is PositionStatus.OPEN


def test_unrealized_pnl() -> None:
    tracker = PositionTracker("a")
    tracker.open(_position("l"))
    tracker.open(_position("s", direction=Direction.SHORT))
    pnl = tracker.unrealized_pnl({"XRP/USDT": 1.01})
    assert pnl == {"l": pytest.approx(1.0 - 0.1), "s": pytest.approx(-1.0 - 0.1)}
    with pytest.raises(MissingPriceError):
        tracker.unrealized_pnl({})
