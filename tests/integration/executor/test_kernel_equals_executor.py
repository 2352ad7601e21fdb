"""The trading kernel fed directly equals the live executor fed through Redis.

The same real candles (XRP/ETH 1m candles of ``../shared/data``, standing in for XRP/USDT) and
the same deliberated decisions go to a :class:`TradingKernel` in memory (no server) and to the
live executor (:class:`TradingLoop`) through the hot-state contract and the decision stream,
as the streamer and the deliberation publish them. Every account ends with the same orders,
fills, positions and equity.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import pandas as pd
import psycopg
import redis

from streamer.executor.loop import TradingLoop
from tests.support.candle_feed import feed_and_drain
from tests.support.memory_audit import MemoryAudit
from triplegain_core.config import Settings
from triplegain_core.contracts.decision_streams import DecisionStream
from triplegain_core.contracts.hot_state import HotStateReader
from triplegain_core.decisions.intake import DecisionIntake
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.decisions.published import PublishedDecision
from triplegain_core.execution.account import StrategyAccount
from triplegain_core.execution.kernel import TradingKernel
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.model.market import Candle, datetime_to_us
from triplegain_core.model.orders import OrderState
from triplegain_core.risk.rules import RiskCheck
from triplegain_core.storage.trading_store import TradingStore

SYMBOL = "XRP/USDT"
# The candles before the decisions arrive, and after.
FIRST = 2000
# Enough that the test means something: trades on several accounts, not one lucky entry.
MIN_FILLS = 150
MIN_CLOSED = 60
MIN_TRADING_ACCOUNTS = 6


def _real_candles(shared_data) -> list[Candle]:
    frame = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet")
    return [Candle(SYMBOL, "1m", datetime_to_us(row.ts.to_pydatetime()), row.open, row.high, row.low, row.close,
                   row.volume, 1)
            for row in frame.itertuples()]


def _decisions(last: Candle) -> list[PublishedDecision]:
    """A long for two models' accounts and one for the rules' own account (refused)."""
    price, at_us = last.close, last.close_time_us
    made = []
    for decision_id, account in (("d-claude", "llm:claude"), ("d-base", "paper"), ("d-gpt", "llm:gpt")):
        decision = TradingDecision(action=Action.LONG, symbol=SYMBOL, confidence=0.8, position_size_pct=10.0,
                                   leverage=1.0, entry=price, stop_loss=price * 0.995, take_profit=price * 1.01,
                                   invalidation="x", reasoning="y", model=account.removeprefix("llm:"))
        made.append(PublishedDecision.make(decision_id, account, account.removeprefix("llm:"), decision, at_us))
    return made


class _Lifecycle:
    """The lifecycle side of a decision intake without a store: the refusals and outcomes."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.executed: list[str] = []

    def refuse(self, decision: PublishedDecision, reason: str, at: datetime) -> None:
        self.refused.append(decision.decision_id)

    def record_outcome(self, decision: PublishedDecision, check: RiskCheck, position_id: str,
                       open_positions: Collection[str], at: datetime) -> DecisionState:
        if not check.approved or position_id not in open_positions:
            return DecisionState.FAILED
        self.executed.append(decision.decision_id)
        return DecisionState.OPEN

    def track_closes(self, open_positions: Collection[str], at: datetime) -> list[str]:
        return []


def _stored_orders(db: psycopg.Connection, account: str) -> list[tuple[object, ...]]:
    return db.execute(
        "SELECT order_id, time, symbol, side, quantity, purpose, check_id, position_id, state, order_type,"
        " time_in_force, limit_price, leverage, repay_loan, filled_quantity, average_price"
        " FROM orders WHERE account = %s ORDER BY order_id", (account,)).fetchall()


def _kept_orders(audit: MemoryAudit, account: str) -> list[tuple[object, ...]]:
    rows = []
    for managed in audit.orders.values():
        o = managed.order
        if o.account == account:
            rows.append((o.order_id, o.time, o.symbol, o.side.value, o.quantity, o.purpose.value, o.check_id,
                         o.position_id, managed.state.value, o.order_type.value, o.time_in_force.value,
                         o.limit_price, o.leverage, o.repay_loan, managed.filled_quantity, managed.average_price))
    return sorted(rows, key=lambda row: str(row[0]))


def _stored_fills(db: psycopg.Connection, account: str) -> list[tuple[object, ...]]:
    return db.execute(
        "SELECT fill_id, order_id, time, symbol, side, quantity, price, fee, fee_asset, loan_change, loan_asset"
        " FROM fills WHERE account = %s ORDER BY fill_id", (account,)).fetchall()


def _kept_fills(audit: MemoryAudit, account: str) -> list[tuple[object, ...]]:
    return sorted(((f.fill_id, f.order_id, f.time, f.symbol, f.side.value, f.quantity, f.price, f.fee,
                    f.fee_asset.value, f.loan_change, f.loan_asset.value if f.loan_asset else None)
                   for f in audit.fills if f.account == account), key=lambda row: str(row[0]))


def _same_account(live: StrategyAccount, direct: StrategyAccount) -> None:
    assert live.name == direct.name
    assert live.stats == direct.stats
    assert live.portfolio.balances == direct.portfolio.balances
    assert live.portfolio.liabilities == direct.portfolio.liabilities
    assert live.positions.open_positions() == direct.positions.open_positions()


def test_the_kernel_fed_directly_trades_as_the_executor_fed_through_redis(
    shared_data, redis_client: redis.Redis, db: psycopg.Connection,
) -> None:
    candles = _real_candles(shared_data)
    decisions = _decisions(candles[FIRST - 1])
    settings = Settings(symbols=(SYMBOL,))

    # The live executor: candles through the hot state, decisions through the decision stream.
    intake = DecisionIntake(DecisionStream(redis_client), start_id="0")
    loop = TradingLoop(settings, HotStateReader(redis_client), TradingStore(db), start_stream_id="0",
                       decisions=intake)
    feed_and_drain(loop, redis_client, candles[:FIRST])
    stream = DecisionStream(redis_client)
    for decision in decisions:
        stream.publish(decision)
    assert loop.cycle() == 0  # a cycle without candles: the ticks' turn, then the decisions
    feed_and_drain(loop, redis_client, candles[FIRST:])

    # The kernel alone, handed the same events in the same order: each batch of candles, then
    # the ticks' turn of the cycle that found no more (nothing new: no price), and the decisions.
    audit, lifecycle = MemoryAudit(), _Lifecycle()
    kernel = TradingKernel(settings, audit, decisions=lifecycle)
    kernel.on_candles(candles[:FIRST])
    kernel.on_ticks({})
    kernel.on_ticks({})
    kernel.on_decisions(decisions)
    kernel.on_candles(candles[FIRST:])
    kernel.on_ticks({})

    assert loop.stats.candles == kernel.stats.candles == len(candles)
    assert lifecycle.refused == ["d-base"] and intake.stats.refused == 1
    assert lifecycle.executed == ["d-claude", "d-gpt"] and intake.stats.executed == 2
    names = [a.name for a in kernel.accounts]
    assert [a.name for a in loop.kernel.accounts] == names
    assert names[-2:] == ["llm:claude", "llm:gpt"]
    store = TradingStore(db)
    for live, direct in zip(loop.kernel.accounts, kernel.accounts, strict=True):
        _same_account(live, direct)
        account = live.name
        assert _stored_orders(db, account) == _kept_orders(audit, account), account
        assert _stored_fills(db, account) == _kept_fills(audit, account), account
        kept_positions = sorted((p for p in audit.positions.values() if p.account == account),
                                key=lambda p: (p.opened_at, p.position_id))
        assert store.positions(account) == kept_positions, account
        kept_checks = sorted((c for c in audit.checks if c.account == account), key=lambda c: (c.time, c.check_id))
        assert store.risk_checks(account) == kept_checks, account
        kept_equity = [(s.time, s.equity_usdt) for s in audit.snapshots if s.account == account]
        assert store.equity_curve(account) == kept_equity, account
        assert kept_equity, f"{account} was never valued"
    assert db.execute("SELECT count(*) FROM technical_signals").fetchone()[0] == len(
        {s.signal_id for s in audit.signals})

    # Not vacuous: many accounts traded, entries and exits, and the decisions' accounts too.
    fills = sum(a.stats.fills for a in kernel.accounts)
    trading = [a.name for a in kernel.accounts if a.stats.fills]
    assert fills >= MIN_FILLS and len(trading) >= MIN_TRADING_ACCOUNTS, (fills, trading)
    assert {"llm:claude", "llm:gpt"} <= set(trading)
    closed = sum(1 for p in audit.positions.values() if p.closed_at is not None)
    assert closed >= MIN_CLOSED
    assert all(o.state is OrderState.FILLED for o in audit.orders.values() if o.filled_quantity)
