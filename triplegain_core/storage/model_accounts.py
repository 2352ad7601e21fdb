"""The leaderboard's inputs read from the store: each model's (and the consensus's) paper account.

An LLM account is ``llm:<source>``; its positions carry the decision id they were opened for
(``<account>:<decision_id>``), which gives each closed trade the confidence its decision stated:
the calibration the leaderboard scores. Cost and latency are those of the model's stored calls.
"""

from __future__ import annotations

import psycopg

from triplegain_core.decisions.published import LLM_ACCOUNT_PREFIX, model_account
from triplegain_core.llm.leaderboard import ModelAccount, ScoredDecision
from triplegain_core.llm.voting import CONSENSUS_MODEL
from triplegain_core.portfolio.positions import Position, PositionStatus
from triplegain_core.storage.decision_store import DecisionStore
from triplegain_core.storage.trading_store import TradingStore


def model_accounts(conn: psycopg.Connection) -> list[ModelAccount]:
    """One ModelAccount per source that has a stored decision or call, consensus included."""
    decisions = DecisionStore(conn).decisions()
    calls = DecisionStore(conn).call_summaries()
    confidence = {record.decision.decision_id: record.decision.decision.confidence for record in decisions}
    sources = sorted({r.decision.source for r in decisions} | {c.model_name for c in calls})
    trading = TradingStore(conn)
    accounts = []
    for source in sources:
        account = model_account(source)
        positions = tuple(trading.positions(account))
        scored = tuple(
            ScoredDecision(confidence=confidence[decision_id], won=p.realized_pnl > 0)
            for p in positions
            if p.status is PositionStatus.CLOSED
            and (decision_id := p.position_id.removeprefix(f"{account}:")) in confidence
        )
        own_calls = [c for c in calls if c.model_name == source]
        accounts.append(ModelAccount(
            name=source,
            positions=positions,
            equity_curve=tuple(trading.equity_curve(account)),
            scored_decisions=scored,
            cost_usd=sum(c.cost_usd for c in own_calls),
            latencies_ms=tuple(c.latency_ms for c in own_calls),
            is_consensus=source == CONSENSUS_MODEL,
        ))
    return accounts


def open_llm_positions(conn: psycopg.Connection) -> dict[str, list[Position]]:
    """The open positions of every LLM account (``llm:*``) that has one, by account."""
    accounts = [row[0] for row in conn.execute(
        "SELECT DISTINCT account FROM positions WHERE account LIKE %s AND status = 'open' ORDER BY 1",
        (f"{LLM_ACCOUNT_PREFIX}%",),
    ).fetchall()]
    trading = TradingStore(conn)
    return {account: [p for p in trading.positions(account) if p.status is PositionStatus.OPEN]
            for account in accounts}
