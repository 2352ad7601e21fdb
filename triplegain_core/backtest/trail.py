"""The audit trail of a backtest, kept in memory: what judging its accounts needs, compactly.

The kernel writes the same trail in a backtest as live (:class:`~triplegain_core.execution.audit.AuditSink`);
a backtest keeps its fills, each position in its latest state, every account's equity curve (as
arrays, one point per snapshot) and counts of the rest. A year of minutes over a dozen accounts
stays within a few hundred megabytes.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime

from triplegain_core.execution.order_manager import ManagedOrder
from triplegain_core.model.market import Asset, datetime_to_us
from triplegain_core.model.orders import Fill, Order, OrderEvent
from triplegain_core.model.signals import Signal, TradeIntent
from triplegain_core.portfolio.balances import USDT_PAIRS, PortfolioSnapshot
from triplegain_core.portfolio.positions import Position
from triplegain_core.risk.guards import GuardEvent
from triplegain_core.risk.rules import RiskCheck


@dataclass(slots=True)
class EquityCurve:
    """An account's equity in USDT at each snapshot (market time, microseconds)."""

    times_us: array[int] = field(default_factory=lambda: array("q"))
    equity: array[float] = field(default_factory=lambda: array("d"))

    def points(self) -> Iterator[tuple[int, float]]:
        """(time, equity) pairs, oldest first."""
        return zip(self.times_us, self.equity, strict=True)


@dataclass(slots=True)
class AccountTrail:
    """What one account did over a backtest."""

    fills: list[Fill] = field(default_factory=list)
    positions: dict[str, Position] = field(default_factory=dict)
    curve: EquityCurve = field(default_factory=EquityCurve)
    fees_usdt: float = 0.0
    signals: int = 0
    approved: int = 0
    rejected: int = 0


class BacktestTrail:
    """An :class:`~triplegain_core.execution.audit.AuditSink` keeping each account's trail in memory."""

    def __init__(self) -> None:
        self.accounts: dict[str, AccountTrail] = {}
        self.guard_events: list[GuardEvent] = []
        # The prices the latest snapshots carried: what a fee in BTC is worth.
        self._snapshot_prices: Mapping[str, float] = {}

    def account(self, name: str) -> AccountTrail:
        """The trail of ``name`` (empty until it traded or was valued)."""
        trail = self.accounts.get(name)
        if trail is None:
            trail = self.accounts[name] = AccountTrail()
        return trail

    def record_signal(self, signal: Signal) -> None:
        """Signals are counted on their account's risk checks; nothing to keep."""

    def record_intent(self, account: str, intent: TradeIntent) -> None:
        """Count a proposed trade of ``account``."""
        self.account(account).signals += 1

    def record_risk_check(self, check: RiskCheck) -> None:
        """Count a risk verdict."""
        trail = self.account(check.account)
        if check.approved:
            trail.approved += 1
        else:
            trail.rejected += 1

    def record_order(self, order: Order | ManagedOrder) -> None:
        """Orders are known by their fills."""

    def record_order_events(self, events: Iterable[OrderEvent]) -> None:
        """Order state changes are not kept."""

    def record_fill(self, fill: Fill) -> None:
        """Keep a fill; its fee valued in USDT at the latest snapshot's prices."""
        trail = self.account(fill.account)
        trail.fills.append(fill)
        asset = fill.fee_asset
        price = 1.0 if asset is Asset.USDT else self._snapshot_prices.get(USDT_PAIRS[asset], 0.0)
        trail.fees_usdt += fill.fee * price

    def record_position(self, position: Position, event: str, time: datetime | None = None) -> None:
        """Keep a position's latest state."""
        self.account(position.account).positions[position.position_id] = position

    def record_snapshots(self, snapshots: Sequence[PortfolioSnapshot]) -> None:
        """Add each account's equity to its curve."""
        time, time_us = None, 0
        accounts = self.accounts
        for snapshot in snapshots:
            if snapshot.time is not time:  # the kernel values every account at one moment
                time, time_us = snapshot.time, datetime_to_us(snapshot.time)
            trail = accounts.get(snapshot.account)
            curve = (self.account(snapshot.account) if trail is None else trail).curve
            curve.times_us.append(time_us)
            curve.equity.append(snapshot.equity_usdt)
        if snapshots:
            self._snapshot_prices = snapshots[0].prices

    def record_guard_event(self, event: GuardEvent) -> None:
        """Keep a guard's set or lift."""
        self.guard_events.append(event)

    def pipeline(self) -> AbstractContextManager[object]:
        """Nothing to batch in memory."""
        return nullcontext()
