"""PositionTracker: exits, closing PnL and fees, unrealized PnL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triplegain_core.model.market import Asset, Side
from triplegain_core.model.orders import Fill, OrderPurpose
from triplegain_core.model.signals import Direction
from triplegain_core.portfolio.balances import MissingPriceError
from triplegain_core.portfolio.positions import Position, PositionStatus, PositionTracker, holding_deadline

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
    assert tracker.holds("BTC/USDT") and not tracker.holds("XRP/BTC")
    tracker.open(_position("p3"))  # a second XRP/USDT position: the oldest is the one named
    tracker.close("p1", _fill(Side.SELL, 1.01), OrderPurpose.TAKE_PROFIT)
    assert tracker.open_for("XRP/USDT").position_id == "p3" and tracker.holds("XRP/USDT")
    assert [t.position.position_id for t in tracker.exits_triggered("XRP/USDT", 0.5, 0.6)] == ["p3"]
    tracker.close("p3", _fill(Side.SELL, 1.01), OrderPurpose.TAKE_PROFIT)
    assert not tracker.holds("XRP/USDT") and tracker.exits_triggered("XRP/USDT", 0.5, 0.6) == []
    assert tracker.trail("XRP/USDT", 2.0, 3.0) == [] and [p.position_id for p in tracker.open_positions()] == ["p2"]


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


# --- trailing stop, invalidation, holding time, USDT PnL


def test_trailing_stop_starts_after_one_and_a_half_r_and_only_tightens() -> None:
    tracker = PositionTracker("a")  # R = 0.02 (entry 1.0, stop 0.98)
    tracker.open(_position())
    assert tracker.trail("XRP/USDT", 1.0, 1.029) == []  # 1.45 R: not yet
    moved = tracker.trail("XRP/USDT", 1.0, 1.03)  # 1.5 R: stop to best - 1 R
    assert [p.stop_loss for p in moved] == [pytest.approx(1.01)]
    assert tracker.get("p1").trailing_active and tracker.get("p1").initial_stop == 0.98
    assert tracker.trail("XRP/USDT", 1.0, 1.02) == []  # a pullback never loosens it
    assert tracker.get("p1").stop_loss == pytest.approx(1.01)
    [trigger] = tracker.exits_triggered("XRP/USDT", 1.005, 1.02)
    assert trigger.purpose is OrderPurpose.TRAILING_STOP and trigger.level == pytest.approx(1.01)


def test_trailing_stop_of_a_short() -> None:
    tracker = PositionTracker("a", trailing_activation_r=1.5, trailing_distance_r=0.5)
    tracker.open(_position(direction=Direction.SHORT))  # entry 1.0, stop 1.02
    [moved] = tracker.trail("XRP/USDT", 0.96, 1.0)  # 2 R in favour
    assert moved.stop_loss == pytest.approx(0.97)


def test_invalidation_level_and_condition_and_holding_time() -> None:
    tracker = PositionTracker("a")
    tracker.open(_position().model_copy(update={"invalidation": 0.99, "max_holding_until": T1}))
    [trigger] = tracker.exits_triggered("XRP/USDT", 0.985, 1.0)
    assert trigger.purpose is OrderPurpose.INVALIDATION and trigger.level == 0.99
    assert tracker.exits_triggered("XRP/USDT", 0.975, 1.0)[0].purpose is OrderPurpose.STOP_LOSS  # stop is worse
    assert tracker.exits_triggered("XRP/USDT", 1.0, 1.0, now=T0) == []
    [held] = tracker.exits_triggered("XRP/USDT", 1.0, 1.0, now=T1)
    assert held.purpose is OrderPurpose.MAX_HOLDING and held.level is None
    other = PositionTracker("a")
    other.open(_position("p2"), condition=lambda position, low, high: high - low > 0.015)
    assert other.exits_triggered("XRP/USDT", 0.995, 1.005) == []
    assert other.exits_triggered("XRP/USDT", 0.99, 1.01)[0].purpose is OrderPurpose.INVALIDATION
    assert holding_deadline(T0, 3600.0) == T0 + timedelta(hours=1) and holding_deadline(T0, None) is None


def test_close_values_pnl_in_usdt_and_clears_the_loan() -> None:
    tracker = PositionTracker("a")
    tracker.open(_position().model_copy(update={"loan": 50.0, "loan_asset": Asset.USDT, "leverage": 2.0}))
    closed = tracker.close("p1", _fill(Side.SELL, 1.04), OrderPurpose.TAKE_PROFIT, quote_usdt=1.0)
    assert closed.realized_pnl_usdt == pytest.approx(closed.realized_pnl) and closed.loan == 0.0


@pytest.mark.parametrize("direction", [Direction.LONG, Direction.SHORT])
def test_a_range_that_opened_at_the_target_took_it_before_touching_the_stop(direction: Direction) -> None:
    tracker = PositionTracker("a")
    position = tracker.open(_position(direction=direction))
    stop, target = position.stop_loss, position.take_profit
    low, high = min(stop, target) * 0.999, max(stop, target) * 1.001  # the range touches both
    # Without the path inside, the stop is assumed first (the safe side) ...
    assert tracker.exits_triggered("XRP/USDT", low, high)[0].purpose is OrderPurpose.STOP_LOSS
    assert tracker.exits_triggered("XRP/USDT", low, high, first=position.entry_price)[0].purpose \
        is OrderPurpose.STOP_LOSS
    # ... but a range that opened beyond the target took the target first.
    beyond = target * (1.001 if direction is Direction.LONG else 0.999)
    [trigger] = tracker.exits_triggered("XRP/USDT", low, high, first=beyond)
    assert trigger.purpose is OrderPurpose.TAKE_PROFIT and trigger.level == target
