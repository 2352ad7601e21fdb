"""The audit port: where the trading kernel and its accounts write their trail.

Every signal, intent, risk check, order, order event, fill, position change and portfolio
snapshot goes through an :class:`AuditSink`. The live executor writes them to PostgreSQL
(:class:`~triplegain_core.storage.trading_store.TradingStore` satisfies the protocol as it
is); a backtest may keep them in memory. The kernel never learns which.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from triplegain_core.execution.order_manager import ManagedOrder
from triplegain_core.model.orders import Fill, Order, OrderEvent
from triplegain_core.model.signals import Signal, TradeIntent
from triplegain_core.portfolio.balances import PortfolioSnapshot
from triplegain_core.portfolio.positions import Position
from triplegain_core.risk.guards import GuardEvent
from triplegain_core.risk.rules import RiskCheck


class AuditSink(Protocol):
    """The writes of the trading trail, each keyed on an id the kernel generated deterministically."""

    def record_signal(self, signal: Signal) -> None:
        """Keep an entry signal."""
        ...

    def record_intent(self, account: str, intent: TradeIntent) -> None:
        """Keep a proposed trade of ``account`` as it came."""
        ...

    def record_risk_check(self, check: RiskCheck) -> None:
        """Keep a risk verdict."""
        ...

    def record_order(self, order: Order | ManagedOrder) -> None:
        """Keep an order (a managed one with its state and filled quantity)."""
        ...

    def record_order_events(self, events: Iterable[OrderEvent]) -> None:
        """Append order state changes."""
        ...

    def record_fill(self, fill: Fill) -> None:
        """Keep a fill."""
        ...

    def record_position(self, position: Position, event: str, time: datetime | None = None) -> None:
        """Keep a position's latest state and the change (``event``) that led to it."""
        ...

    def record_snapshots(self, snapshots: Sequence[PortfolioSnapshot]) -> None:
        """Keep several accounts' holdings and values at one moment."""
        ...

    def record_guard_event(self, event: GuardEvent) -> None:
        """Keep a market guard setting or lifting its entry block."""
        ...

    def pipeline(self) -> AbstractContextManager[object]:
        """A block whose writes may be batched; they are all written when it ends."""
        ...
