"""An audit sink in memory: the trading kernel's whole trail, kept as the objects it wrote."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime

from triplegain_core.execution.order_manager import ManagedOrder
from triplegain_core.model.orders import Fill, Order, OrderEvent
from triplegain_core.model.signals import Signal, TradeIntent
from triplegain_core.portfolio.balances import PortfolioSnapshot
from triplegain_core.portfolio.positions import Position
from triplegain_core.risk.guards import GuardEvent
from triplegain_core.risk.rules import RiskCheck


@dataclass(frozen=True, slots=True)
class PositionEvent:
    """One recorded change of a position: its state after the change."""

    event: str
    time: datetime
    position: Position


@dataclass
class MemoryAudit:
    """Keeps every write, in order; orders and positions also by id in their latest state
    (as the store's upserts do)."""

    signals: list[Signal] = field(default_factory=list)
    intents: list[tuple[str, TradeIntent]] = field(default_factory=list)
    checks: list[RiskCheck] = field(default_factory=list)
    orders: dict[str, ManagedOrder] = field(default_factory=dict)
    order_events: list[OrderEvent] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    positions: dict[str, Position] = field(default_factory=dict)
    position_events: list[PositionEvent] = field(default_factory=list)
    snapshots: list[PortfolioSnapshot] = field(default_factory=list)
    guard_events: list[GuardEvent] = field(default_factory=list)
    pipelines: int = 0

    def record_signal(self, signal: Signal) -> None:
        self.signals.append(signal)

    def record_intent(self, account: str, intent: TradeIntent) -> None:
        self.intents.append((account, intent))

    def record_risk_check(self, check: RiskCheck) -> None:
        self.checks.append(check)

    def record_order(self, order: Order | ManagedOrder) -> None:
        if not isinstance(order, ManagedOrder):
            raise TypeError("the kernel records managed orders only")
        self.orders[order.order.order_id] = order

    def record_order_events(self, events: Iterable[OrderEvent]) -> None:
        self.order_events.extend(events)

    def record_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    def record_position(self, position: Position, event: str, time: datetime | None = None) -> None:
        self.positions[position.position_id] = position
        when = time or position.closed_at or position.opened_at
        self.position_events.append(PositionEvent(event, when, position))

    def record_snapshots(self, snapshots: Sequence[PortfolioSnapshot]) -> None:
        self.snapshots.extend(snapshots)

    def record_guard_event(self, event: GuardEvent) -> None:
        self.guard_events.append(event)

    def pipeline(self) -> AbstractContextManager[object]:
        self.pipelines += 1
        return nullcontext()
