"""The trading audit trail: signals, risk checks, orders, fills, positions, snapshots.

Every write is keyed on an id the executor generated deterministically, so writing the same
record twice (a retry, a restart) is a no-op rather than a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import datetime

import pandas as pd
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from triplegain_core.execution.order_manager import ManagedOrder
from triplegain_core.model.market import Asset
from triplegain_core.model.orders import Fill, Order, OrderEvent, OrderState
from triplegain_core.model.signals import Signal, TradeIntent
from triplegain_core.portfolio.balances import PortfolioSnapshot
from triplegain_core.portfolio.metrics import AccountMetrics, account_metrics
from triplegain_core.portfolio.positions import Position
from triplegain_core.risk.guards import GuardAction, GuardEvent
from triplegain_core.risk.rules import RiskCheck, RiskReason

_SNAPSHOT_UPSERT = (
    "INSERT INTO portfolio_snapshots (account, time, btc, usdt, xrp, prices, equity_usdt,"
    " liabilities) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (account, time)"
    " DO UPDATE SET btc = EXCLUDED.btc, usdt = EXCLUDED.usdt, xrp = EXCLUDED.xrp,"
    " prices = EXCLUDED.prices, equity_usdt = EXCLUDED.equity_usdt,"
    " liabilities = EXCLUDED.liabilities"
)


def _snapshot_params(snapshot: PortfolioSnapshot) -> tuple[object, ...]:
    return (snapshot.account, snapshot.time, snapshot.balances.get(Asset.BTC, 0.0),
            snapshot.balances.get(Asset.USDT, 0.0), snapshot.balances.get(Asset.XRP, 0.0),
            Jsonb(snapshot.prices), snapshot.equity_usdt,
            Jsonb({asset.value: amount for asset, amount in snapshot.liabilities.items()}))


class CycleTransaction:
    """One PostgreSQL transaction (in a pipeline) per trading-loop cycle, begun on the cycle's
    first write: a cycle that writes nothing (most ticks) costs no round trip, and one that
    writes has its whole trail and its checkpoint committed together, or none of it."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self._stack: ExitStack | None = None
        self._begun = False

    @contextmanager
    def cycle(self, *, eager: bool = False) -> Iterator[None]:
        """The block of one cycle: a transaction begun at once (``eager``) or at the first
        write inside, committed when the block ends, rolled back when it raises."""
        if self._stack is not None:
            raise RuntimeError("a cycle's transaction is already open")
        with ExitStack() as stack:
            self._stack, self._begun = stack, False
            try:
                if eager:
                    self.begin()
                yield
            finally:
                self._stack, self._begun = None, False

    def begin(self) -> None:
        """Begin the cycle's transaction unless it has begun (outside a cycle: nothing, each
        write commits on its own as before)."""
        if self._stack is None or self._begun:
            return
        self._begun = True
        self._stack.enter_context(self._conn.pipeline())
        self._stack.enter_context(self._conn.transaction())

    @property
    def begun(self) -> bool:
        """Whether the current cycle has written (its transaction is open)."""
        return self._begun


class TradingStore:
    """Writes and reads the trading tables of the schema.

    Inside a :attr:`transactions` cycle, the writes go into that cycle's transaction."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self.transactions = CycleTransaction(conn)
        """The per-cycle transaction the trading loop wraps its cycles in."""

    def record_signal(self, signal: Signal) -> None:
        """Keep an entry signal (a CLOSE has no direction or levels: ValueError)."""
        if signal.direction is None:
            raise ValueError(f"{signal.signal_id}: the signals table keeps entries only, not a CLOSE")
        self.transactions.begin()
        self._conn.execute(
            "INSERT INTO technical_signals (signal_id, strategy, symbol, timeframe, time, direction,"
            " strength, entry, stop_loss, take_profit, indicators)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (signal.signal_id, signal.strategy, signal.symbol, signal.timeframe, signal.time,
             signal.direction.value, signal.strength, signal.entry, signal.stop_loss,
             signal.take_profit, Jsonb(signal.indicators)),
        )

    def record_intent(self, account: str, intent: TradeIntent) -> None:
        """Keep a proposed trade as it came, whatever its values (the risk check judges it)."""
        self.transactions.begin()
        self._conn.execute(
            "INSERT INTO trade_intents (intent_id, account, source, strategy, tested, symbol, time,"
            " action, entry, stop_loss, take_profit, size_fraction, leverage, confidence,"
            " invalidation, max_holding_s, signal_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (intent.intent_id, account, intent.source, intent.strategy, intent.tested, intent.symbol,
             intent.time, intent.action.value, intent.entry, intent.stop_loss, intent.take_profit,
             intent.size_fraction, intent.leverage, intent.confidence, intent.invalidation,
             intent.max_holding_s, intent.signal_id),
        )

    def record_risk_check(self, check: RiskCheck) -> None:
        """Keep a risk verdict with its reasons, adjustments and the leverage it set."""
        self.transactions.begin()
        self._conn.execute(
            "INSERT INTO risk_checks (check_id, account, time, symbol, signal_id, position_id,"
            " approved, reasons, quantity, notional_usdt, equity_usdt, risk_usdt, adjustments,"
            " leverage, intent_id, strategy, direction, entry, stop_loss, limit_price)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (check.check_id, check.account, check.time, check.symbol, check.signal_id,
             check.position_id, check.approved, [r.value for r in check.reasons], check.quantity,
             check.notional_usdt, check.equity_usdt, check.risk_usdt,
             [a.value for a in check.adjustments], check.leverage, check.intent_id, check.strategy,
             check.direction.value if check.direction else None, check.entry, check.stop_loss,
             check.limit_price),
        )

    def record_order(self, order: Order | ManagedOrder) -> None:
        """Upsert an order; a ManagedOrder also carries its state and filled quantity."""
        self.transactions.begin()
        managed = order if isinstance(order, ManagedOrder) else None
        plain = order.order if isinstance(order, ManagedOrder) else order
        state = managed.state if managed else OrderState.NEW
        self._conn.execute(
            "INSERT INTO orders (order_id, account, time, symbol, side, quantity, purpose,"
            " check_id, position_id, state, order_type, time_in_force, limit_price, stop_price,"
            " leverage, repay_loan, filled_quantity, average_price)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (order_id) DO UPDATE SET quantity = EXCLUDED.quantity,"
            " state = EXCLUDED.state, limit_price = EXCLUDED.limit_price,"
            " stop_price = EXCLUDED.stop_price, filled_quantity = EXCLUDED.filled_quantity,"
            " average_price = EXCLUDED.average_price"
            " WHERE %s",  # a plain Order resend changes nothing; a ManagedOrder brings its state
            (plain.order_id, plain.account, plain.time, plain.symbol, plain.side.value,
             plain.quantity, plain.purpose.value, plain.check_id, plain.position_id, state.value,
             plain.order_type.value, plain.time_in_force.value, plain.limit_price, plain.stop_price,
             plain.leverage, plain.repay_loan, managed.filled_quantity if managed else 0.0,
             managed.average_price if managed else None, managed is not None),
        )

    def record_order_events(self, events: Iterable[OrderEvent]) -> None:
        """Append order state changes; each (order, seq) is written once."""
        rows = [(e.order_id, e.seq, e.time, e.state.value, e.filled_quantity, e.detail) for e in events]
        if rows:
            self.transactions.begin()
            with self._conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO order_events (order_id, seq, time, state, filled_quantity, detail)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    rows,
                )

    def order_events(self, order_id: str) -> list[OrderEvent]:
        """The stored state changes of one order, in order."""
        with self._conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT order_id, seq, time, state, filled_quantity, detail FROM order_events"
                " WHERE order_id = %s ORDER BY seq",
                (order_id,),
            ).fetchall()
        return [OrderEvent.model_validate(row) for row in rows]

    def order_states(self, account: str) -> dict[str, OrderState]:
        """The latest state of every order of the account, by client order id."""
        rows = self._conn.execute(
            "SELECT order_id, state FROM orders WHERE account = %s", (account,)
        ).fetchall()
        return {order_id: OrderState(state) for order_id, state in rows}

    def record_fill(self, fill: Fill) -> None:
        self.transactions.begin()
        self._conn.execute(
            "INSERT INTO fills (fill_id, order_id, account, time, symbol, side, quantity, price,"
            " fee, fee_asset, loan_change, loan_asset)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (fill.fill_id, fill.order_id, fill.account, fill.time, fill.symbol, fill.side.value,
             fill.quantity, fill.price, fill.fee, fill.fee_asset.value, fill.loan_change,
             fill.loan_asset.value if fill.loan_asset else None),
        )

    def record_position(self, position: Position, event: str, time: datetime | None = None) -> None:
        """Upsert the position's latest state and append the change to its history.

        ``time`` stamps the change (default: the close, else the open).
        """
        state = position.model_dump(mode="json")
        self.transactions.begin()
        with self._conn.transaction():
            self._conn.execute(
                "INSERT INTO positions (position_id, account, symbol, direction, quantity,"
                " entry_price, stop_loss, take_profit, opened_at, entry_notional_usdt,"
                " equity_at_entry_usdt, status, closed_at, exit_price, exit_reason, realized_pnl,"
                " fees, strategy, leverage, loan, loan_asset, initial_stop, trailing_active,"
                " best_price, invalidation, max_holding_until, realized_pnl_usdt, exit_crossed_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (position_id) DO UPDATE SET quantity = EXCLUDED.quantity,"
                " stop_loss = EXCLUDED.stop_loss, take_profit = EXCLUDED.take_profit,"
                " status = EXCLUDED.status, closed_at = EXCLUDED.closed_at,"
                " exit_price = EXCLUDED.exit_price, exit_reason = EXCLUDED.exit_reason,"
                " realized_pnl = EXCLUDED.realized_pnl, fees = EXCLUDED.fees,"
                " loan = EXCLUDED.loan, trailing_active = EXCLUDED.trailing_active,"
                " best_price = EXCLUDED.best_price, realized_pnl_usdt = EXCLUDED.realized_pnl_usdt,"
                " exit_crossed_at = EXCLUDED.exit_crossed_at",
                (position.position_id, position.account, position.symbol,
                 position.direction.value, position.quantity, position.entry_price,
                 position.stop_loss, position.take_profit, position.opened_at,
                 position.entry_notional_usdt, position.equity_at_entry_usdt,
                 position.status.value, position.closed_at, position.exit_price,
                 position.exit_reason.value if position.exit_reason else None,
                 position.realized_pnl, position.fees, position.strategy, position.leverage,
                 position.loan, position.loan_asset.value if position.loan_asset else None,
                 position.initial_stop, position.trailing_active, position.best_price,
                 position.invalidation, position.max_holding_until, position.realized_pnl_usdt,
                 position.exit_crossed_at),
            )
            event_time = time or position.closed_at or position.opened_at
            self._conn.execute(
                "INSERT INTO position_events (position_id, time, event, state)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (position.position_id, event_time, event, Jsonb(state)),
            )

    def record_snapshot(self, snapshot: PortfolioSnapshot) -> None:
        self.transactions.begin()
        self._conn.execute(_SNAPSHOT_UPSERT, _snapshot_params(snapshot))

    def record_snapshots(self, snapshots: Sequence[PortfolioSnapshot]) -> None:
        """Upsert several accounts' snapshots, pipelined (one round trip, not one per account).

        One single-row statement for all rows, rather than one multi-row statement: psycopg
        parses a statement of that many parameters afresh on every call, while this one it
        parses once and reuses.
        """
        if not snapshots:
            return
        self.transactions.begin()
        with self._conn.cursor() as cur:
            cur.executemany(_SNAPSHOT_UPSERT, [_snapshot_params(s) for s in snapshots])

    def record_guard_event(self, event: GuardEvent) -> None:
        """Keep a market guard setting or lifting its entry block (once per guard, time and action)."""
        self.transactions.begin()
        self._conn.execute(
            "INSERT INTO guard_events (guard, action, time, detail) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (event.guard.value, event.action.value, event.time, event.detail),
        )

    def guard_events(self) -> list[GuardEvent]:
        """Every guard event, in time order."""
        rows = self._conn.execute(
            "SELECT guard, action, time, detail FROM guard_events ORDER BY time, guard, action DESC"
        ).fetchall()
        return [GuardEvent(RiskReason(guard), GuardAction(action), time, detail)
                for guard, action, time, detail in rows]

    def pipeline(self) -> AbstractContextManager[psycopg.Pipeline]:
        """A block whose writes are sent without waiting for each reply, and synced at its end.

        The trading loop writes a cycle's trail (often a dozen statements) in one such block:
        one round trip to the server instead of one per statement. An error surfaces at the
        latest when the block ends.
        """
        return self._conn.pipeline()

    def snapshots(self, account: str) -> pd.DataFrame:
        """The account's portfolio snapshots in time order (time, btc, usdt, xrp, equity_usdt, prices)."""
        rows = self._conn.execute(
            "SELECT time, btc, usdt, xrp, equity_usdt, prices FROM portfolio_snapshots"
            " WHERE account = %s ORDER BY time",
            (account,),
        ).fetchall()
        frame = pd.DataFrame(rows, columns=["time", "btc", "usdt", "xrp", "equity_usdt", "prices"])
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        return frame

    def positions(self, account: str) -> list[Position]:
        """Every position of the account in its latest state, oldest first."""
        with self._conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                f"SELECT {', '.join(Position.model_fields)} FROM positions"
                " WHERE account = %s ORDER BY opened_at, position_id",
                (account,),
            ).fetchall()
        return [Position.model_validate(row) for row in rows]

    def risk_checks(self, account: str) -> list[RiskCheck]:
        """Every risk check of the account, in time order."""
        with self._conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                f"SELECT {', '.join(RiskCheck.model_fields)} FROM risk_checks"
                " WHERE account = %s ORDER BY time, check_id",
                (account,),
            ).fetchall()
        return [RiskCheck.model_validate(row) for row in rows]

    def accounts(self) -> list[str]:
        """Accounts that have at least one portfolio snapshot."""
        rows = self._conn.execute("SELECT DISTINCT account FROM portfolio_snapshots ORDER BY 1")
        return [row[0] for row in rows.fetchall()]

    def activity_counts(self, account: str) -> dict[str, int]:
        """How many signals, risk checks (approved and rejected), orders and fills there are."""
        row = self._conn.execute(
            "SELECT (SELECT count(*) FROM technical_signals),"
            " (SELECT count(*) FROM risk_checks WHERE account = %(a)s AND approved),"
            " (SELECT count(*) FROM risk_checks WHERE account = %(a)s AND NOT approved),"
            " (SELECT count(*) FROM orders WHERE account = %(a)s),"
            " (SELECT count(*) FROM fills WHERE account = %(a)s)",
            {"a": account},
        ).fetchone()
        assert row is not None, "a SELECT of counts returns one row"
        return dict(zip(("signals", "approved_checks", "rejected_checks", "orders", "fills"), row, strict=True))

    def fees_paid(self, account: str) -> dict[str, float]:
        """Total fees per fee asset."""
        rows = self._conn.execute(
            "SELECT fee_asset, sum(fee) FROM fills WHERE account = %s GROUP BY fee_asset ORDER BY 1",
            (account,),
        ).fetchall()
        return {asset: float(total) for asset, total in rows}

    def fills_with_checks(self, account: str) -> Sequence[tuple[str, str, bool]]:
        """(fill_id, order_id, risk check approved) for every fill: the audit join."""
        return self._conn.execute(
            "SELECT f.fill_id, o.order_id, c.approved FROM fills f"
            " JOIN orders o USING (order_id) JOIN risk_checks c ON c.check_id = o.check_id"
            " WHERE f.account = %s",
            (account,),
        ).fetchall()

    def equity_curve(self, account: str) -> list[tuple[datetime, float]]:
        """(time, equity in USDT) of every stored snapshot of the account, oldest first."""
        rows = self._conn.execute(
            "SELECT time, equity_usdt FROM portfolio_snapshots WHERE account = %s ORDER BY time",
            (account,),
        ).fetchall()
        return [(time, float(equity)) for time, equity in rows]

    def account_metrics(self, account: str) -> AccountMetrics:
        """The account's scorecard (trades, win rate, PnL by symbol, drawdown, Sharpe, Sortino)
        from its stored positions and equity snapshots."""
        return account_metrics(account, self.positions(account), self.equity_curve(account))
