"""The trading audit trail: signals, risk checks, orders, fills, positions, snapshots.

Every write is keyed on an id the executor generated deterministically, so writing the same
record twice (a retry, a restart) is a no-op rather than a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from triplegain_core.market import Asset
from triplegain_core.orders import Fill, Order
from triplegain_core.portfolio import PortfolioSnapshot
from triplegain_core.positions import Position
from triplegain_core.risk import RiskCheck
from triplegain_core.signals import TechnicalSignal


class TradingStore:
    """Writes and reads the trading tables of the schema."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def record_signal(self, signal: TechnicalSignal) -> None:
        self._conn.execute(
            "INSERT INTO technical_signals (signal_id, strategy, symbol, timeframe, time, direction,"
            " strength, entry, stop_loss, take_profit, indicators)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (signal.signal_id, signal.strategy, signal.symbol, signal.timeframe, signal.time,
             signal.direction.value, signal.strength, signal.entry, signal.stop_loss,
             signal.take_profit, Jsonb(signal.indicators)),
        )

    def record_risk_check(self, check: RiskCheck) -> None:
        self._conn.execute(
            "INSERT INTO risk_checks (check_id, account, time, symbol, signal_id, position_id,"
            " approved, reasons, quantity, notional_usdt, equity_usdt, risk_usdt)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (check.check_id, check.account, check.time, check.symbol, check.signal_id,
             check.position_id, check.approved, [r.value for r in check.reasons], check.quantity,
             check.notional_usdt, check.equity_usdt, check.risk_usdt),
        )

    def record_order(self, order: Order) -> None:
        self._conn.execute(
            "INSERT INTO orders (order_id, account, time, symbol, side, quantity, purpose,"
            " check_id, position_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (order.order_id, order.account, order.time, order.symbol, order.side.value,
             order.quantity, order.purpose.value, order.check_id, order.position_id),
        )

    def record_fill(self, fill: Fill) -> None:
        self._conn.execute(
            "INSERT INTO fills (fill_id, order_id, account, time, symbol, side, quantity, price,"
            " fee, fee_asset) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (fill.fill_id, fill.order_id, fill.account, fill.time, fill.symbol, fill.side.value,
             fill.quantity, fill.price, fill.fee, fill.fee_asset.value),
        )

    def record_position(self, position: Position, event: str) -> None:
        """Upsert the position's latest state and append the change to its history."""
        state = position.model_dump(mode="json")
        with self._conn.transaction():
            self._conn.execute(
                "INSERT INTO positions (position_id, account, symbol, direction, quantity,"
                " entry_price, stop_loss, take_profit, opened_at, entry_notional_usdt,"
                " equity_at_entry_usdt, status, closed_at, exit_price, exit_reason, realized_pnl,"
                " fees) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (position_id) DO UPDATE SET quantity = EXCLUDED.quantity,"
                " stop_loss = EXCLUDED.stop_loss, take_profit = EXCLUDED.take_profit,"
                " status = EXCLUDED.status, closed_at = EXCLUDED.closed_at,"
                " exit_price = EXCLUDED.exit_price, exit_reason = EXCLUDED.exit_reason,"
                " realized_pnl = EXCLUDED.realized_pnl, fees = EXCLUDED.fees",
                (position.position_id, position.account, position.symbol,
                 position.direction.value, position.quantity, position.entry_price,
                 position.stop_loss, position.take_profit, position.opened_at,
                 position.entry_notional_usdt, position.equity_at_entry_usdt,
                 position.status.value, position.closed_at, position.exit_price,
                 position.exit_reason.value if position.exit_reason else None,
                 position.realized_pnl, position.fees),
            )
            event_time = position.closed_at or position.opened_at
            self._conn.execute(
                "INSERT INTO position_events (position_id, time, event, state)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (position.position_id, event_time, event, Jsonb(state)),
            )

    def record_snapshot(self, snapshot: PortfolioSnapshot) -> None:
        self._conn.execute(
            "INSERT INTO portfolio_snapshots (account, time, btc, usdt, xrp, prices, equity_usdt)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (account, time) DO UPDATE SET"
            " btc = EXCLUDED.btc, usdt = EXCLUDED.usdt, xrp = EXCLUDED.xrp,"
            " prices = EXCLUDED.prices, equity_usdt = EXCLUDED.equity_usdt",
            (snapshot.account, snapshot.time, snapshot.balances.get(Asset.BTC, 0.0),
             snapshot.balances.get(Asset.USDT, 0.0), snapshot.balances.get(Asset.XRP, 0.0),
             Jsonb(snapshot.prices), snapshot.equity_usdt),
        )

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
        return dict(zip(("signals", "approved_checks", "rejected_checks", "orders", "fills"), row))

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
