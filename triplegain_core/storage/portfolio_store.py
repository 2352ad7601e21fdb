"""Regimes, rebalance plans (tables of migration 0012) and the portfolio reads they need.

Writes are upserts on the natural keys (symbol, timeframe, candle; account, snapshot), so a
rerun of an asset overwrites its rows rather than adding to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from triplegain_core.analysis.regime import RegimeResult
from triplegain_core.analysis.symbol_regime import SymbolRegime
from triplegain_core.model.market import TRADED_SYMBOLS, Asset
from triplegain_core.portfolio.balances import PortfolioSnapshot
from triplegain_core.portfolio.rebalance_review import PlanInputs, StoredPlan, StoredQuote, plan_inputs
from triplegain_core.portfolio.rebalancing import RebalancePlan, TriangularCycle
from triplegain_core.storage.market_store import MarketStore

_SNAPSHOT_COLUMNS = "account, time, btc, usdt, xrp, prices, equity_usdt, liabilities"
_PLAN_COLUMNS = ("account, snapshot_time, regime, previous_regime, prices, reference_prices,"
                 " quote_source, plan, cycles")


def _snapshot(row: dict[str, Any]) -> PortfolioSnapshot:
    return PortfolioSnapshot.from_stored(
        account=row["account"], time=row["time"],
        balances={Asset.BTC: row["btc"], Asset.USDT: row["usdt"], Asset.XRP: row["xrp"]},
        prices=row["prices"], equity_usdt=row["equity_usdt"], liabilities=row["liabilities"],
    )


def _plan(row: dict[str, Any]) -> StoredPlan:
    return StoredPlan(
        account=row["account"], snapshot_time=row["snapshot_time"], regime=row["regime"],
        previous_regime=row["previous_regime"], prices=row["prices"],
        reference_prices=row["reference_prices"], quote_source=row["quote_source"],
        plan=RebalancePlan.model_validate(row["plan"]),
        cycles=tuple(TriangularCycle.model_validate(c) for c in row["cycles"]),
    )


class PortfolioStore:
    """Reads and writes ``market_regimes`` and ``rebalance_plans``, reads the snapshots."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    # --- regimes ------------------------------------------------------------------------------

    def write_regimes(self, regimes: Sequence[SymbolRegime]) -> int:
        """Upsert one row per (symbol, timeframe, candle); returns the rows sent."""
        rows = [
            (r.symbol, r.timeframe, r.time, r.close, r.result.regime.value, r.result.score,
             r.result.volatility.value, r.result.volatility_percentile, r.result.natr,
             Jsonb([c.model_dump(mode="json") for c in r.result.components]), r.result.note)
            for r in regimes
        ]
        if rows:
            with self._conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO market_regimes (symbol, timeframe, time, close, regime, score,"
                    " volatility, volatility_percentile, natr, components, note, computed_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
                    " ON CONFLICT (symbol, timeframe, time) DO UPDATE SET close = EXCLUDED.close,"
                    " regime = EXCLUDED.regime, score = EXCLUDED.score,"
                    " volatility = EXCLUDED.volatility,"
                    " volatility_percentile = EXCLUDED.volatility_percentile,"
                    " natr = EXCLUDED.natr, components = EXCLUDED.components,"
                    " note = EXCLUDED.note, computed_at = now()",
                    rows,
                )
        return len(rows)

    def latest_regime(self, symbol: str, timeframe: str) -> SymbolRegime | None:
        """The regime at the newest candle stored for the symbol and timeframe."""
        with self._conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT symbol, timeframe, time, close, regime, score, volatility,"
                " volatility_percentile, natr, components, note FROM market_regimes"
                " WHERE symbol = %s AND timeframe = %s ORDER BY time DESC LIMIT 1",
                (symbol, timeframe),
            ).fetchone()
        if row is None:
            return None
        result = RegimeResult(
            regime=row["regime"], score=row["score"], components=tuple(row["components"]),
            sentiment_used=any(c["name"] == "sentiment" for c in row["components"]),
            note=row["note"], volatility=row["volatility"],
            volatility_percentile=row["volatility_percentile"], natr=row["natr"],
        )
        return SymbolRegime(symbol=row["symbol"], timeframe=row["timeframe"], time=row["time"],
                            close=row["close"], result=result)

    # --- snapshots and book -------------------------------------------------------------------

    def latest_snapshots(self, account: str | None = None) -> list[PortfolioSnapshot]:
        """The newest snapshot of every account (or of ``account`` only), by account."""
        with self._conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                f"SELECT DISTINCT ON (account) {_SNAPSHOT_COLUMNS} FROM portfolio_snapshots"
                " WHERE %(account)s::text IS NULL OR account = %(account)s"
                " ORDER BY account, time DESC",
                {"account": account},
            ).fetchall()
        return [_snapshot(row) for row in rows]

    def first_snapshot(self, account: str) -> PortfolioSnapshot | None:
        """The account's oldest snapshot: its starting point."""
        with self._conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"SELECT {_SNAPSHOT_COLUMNS} FROM portfolio_snapshots WHERE account = %s"
                " ORDER BY time LIMIT 1",
                (account,),
            ).fetchone()
        return _snapshot(row) if row else None

    def stored_quotes(self, symbols: Sequence[str]) -> dict[str, StoredQuote]:
        """Best bid and ask of each symbol's newest stored book snapshot with both sides."""
        rows = self._conn.execute(
            "SELECT b.symbol, b.time, b.bid_price[1], b.ask_price[1]"
            " FROM unnest(%s::text[]) AS s(symbol) CROSS JOIN LATERAL ("
            " SELECT symbol, time, bid_price, ask_price FROM book_snapshots"
            " WHERE book_snapshots.symbol = s.symbol"
            " AND cardinality(bid_price) > 0 AND cardinality(ask_price) > 0"
            " ORDER BY time DESC LIMIT 1) AS b",
            (list(symbols),),
        ).fetchall()
        return {symbol: StoredQuote(symbol=symbol, time=time, bid=bid, ask=ask)
                for symbol, time, bid, ask in rows}

    # --- plans --------------------------------------------------------------------------------

    def write_plan(self, stored: StoredPlan) -> None:
        """Upsert the plan of one account's snapshot."""
        plan = stored.plan
        self._conn.execute(
            "INSERT INTO rebalance_plans (account, snapshot_time, regime, previous_regime, prices,"
            " reference_prices, quote_source, plan, cycles, has_trades, equity_usdt, fees_usdt)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (account, snapshot_time) DO UPDATE SET created_at = now(),"
            " regime = EXCLUDED.regime, previous_regime = EXCLUDED.previous_regime,"
            " prices = EXCLUDED.prices, reference_prices = EXCLUDED.reference_prices,"
            " quote_source = EXCLUDED.quote_source, plan = EXCLUDED.plan, cycles = EXCLUDED.cycles,"
            " has_trades = EXCLUDED.has_trades, equity_usdt = EXCLUDED.equity_usdt,"
            " fees_usdt = EXCLUDED.fees_usdt",
            (stored.account, stored.snapshot_time, stored.regime, stored.previous_regime,
             Jsonb(stored.prices), Jsonb(stored.reference_prices), stored.quote_source,
             Jsonb(plan.model_dump(mode="json")),
             Jsonb([cycle.model_dump(mode="json") for cycle in stored.cycles]),
             bool(plan.trades), plan.equity_before_usdt,
             plan.fees_usdt),
        )

    def last_plan(self, account: str, *, with_trades: bool = False,
                  before: datetime | None = None) -> StoredPlan | None:
        """The account's newest plan (only those recommending trades with ``with_trades``),
        made for a snapshot older than ``before`` when given."""
        with self._conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"SELECT {_PLAN_COLUMNS} FROM rebalance_plans WHERE account = %(account)s"
                " AND (NOT %(with_trades)s OR has_trades)"
                " AND (%(before)s::timestamptz IS NULL OR snapshot_time < %(before)s)"
                " ORDER BY snapshot_time DESC LIMIT 1",
                {"account": account, "with_trades": with_trades, "before": before},
            ).fetchone()
        return _plan(row) if row else None

    def plans(self, account: str) -> list[StoredPlan]:
        """Every plan of the account, oldest snapshot first."""
        with self._conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                f"SELECT {_PLAN_COLUMNS} FROM rebalance_plans WHERE account = %s"
                " ORDER BY snapshot_time",
                (account,),
            ).fetchall()
        return [_plan(row) for row in rows]

    # --- the rebalancer's inputs --------------------------------------------------------------

    def plan_inputs(
        self, snapshot: PortfolioSnapshot, regime_symbol: str, regime_timeframe: str
    ) -> PlanInputs:
        """Read what :func:`~triplegain_core.portfolio.rebalance_review.plan_inputs` needs for the
        snapshot's account; plans of this snapshot itself are ignored, so a rerun sees what
        the first run saw."""
        account = snapshot.account
        regime = self.latest_regime(regime_symbol, regime_timeframe)
        return plan_inputs(
            snapshot,
            self.first_snapshot(account) or snapshot,
            MarketStore(self._conn).last_candles(TRADED_SYMBOLS),
            self.stored_quotes(TRADED_SYMBOLS),
            regime.result.regime.value if regime else None,
            self.last_plan(account, before=snapshot.time),
            self.last_plan(account, with_trades=True, before=snapshot.time),
        )
