"""``llm_decisions`` on a real PostgreSQL: round trip, idempotence, the schema's own guards."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from triplegain_core.decisions.published import DeliberatedDecision, PublishedDecision
from triplegain_core.llm.leaderboard import ScoredDecision
from triplegain_core.llm.models import CallOutcome
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.model.market import US_PER_MINUTE, datetime_to_us
from triplegain_core.model.orders import OrderPurpose
from triplegain_core.model.signals import Direction
from triplegain_core.portfolio.positions import Position, PositionStatus
from triplegain_core.storage.decision_store import DecisionStore
from triplegain_core.storage.model_accounts import model_accounts
from triplegain_core.storage.trading_store import TradingStore

T0 = datetime_to_us(datetime(2026, 4, 1, 9, tzinfo=UTC))


def _published(decision_id: str, source: str, minute: int, action: Action = Action.LONG) -> PublishedDecision:
    levels = (0.5, 0.49, 0.53) if action is Action.LONG else (None, None, None)
    decision = TradingDecision(action=action, symbol="XRP/USDT", confidence=0.7, position_size_pct=4.0,
                               leverage=1.0, entry=levels[0], stop_loss=levels[1], take_profit=levels[2],
                               invalidation="x", reasoning="y", model=source)
    return PublishedDecision.make(decision_id, f"llm:{source}", source, decision, T0 + minute * US_PER_MINUTE)


def test_decisions_round_trip_in_market_time_order(db: psycopg.Connection) -> None:
    store = DecisionStore(db)
    records = [
        DeliberatedDecision(request_id="r2", mode="parallel", decision=_published("b", "gpt", 5)),
        DeliberatedDecision(request_id="r1", mode="parallel", decision=_published("a", "claude", 1)),
        DeliberatedDecision(request_id="r1", mode="parallel", decision=_published("c", "claude", 2, Action.HOLD),
                       refusal="not_a_trade"),
    ]
    store.record(records)
    store.record(records[:1])  # a rerun of the same round stores nothing twice
    read = store.decisions()
    assert [r.decision.decision_id for r in read] == ["a", "c", "b"]
    assert read[0] == records[1] and read[1] == records[2] and not read[1].tradeable
    assert [r.decision.decision_id for r in store.decisions(source="claude")] == ["a", "c"]
    since = datetime.fromtimestamp((T0 + 2 * US_PER_MINUTE) / 1e6, UTC)
    assert [r.decision.decision_id for r in store.decisions(since=since)] == ["c", "b"]


def test_a_decision_expiring_before_it_is_made_is_refused_by_the_schema(db: psycopg.Connection) -> None:
    published = _published("x", "gpt", 0)
    store = DecisionStore(db)
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "INSERT INTO llm_decisions (decision_id, request_id, account, source, mode, symbol, market_time,"
            " expires_at, action, confidence, decision)"
            " SELECT 'x', 'r', 'a', 'gpt', 'parallel', 'XRP/USDT', now(), now() - interval '1 minute',"
            " 'LONG', 0.7, '{}'::jsonb"
        )
    assert store.decisions() == []
    store.record([DeliberatedDecision(request_id="r", mode="parallel", decision=published)])
    assert store.decisions()[0].decision == published


def test_call_summaries_read_every_outcome(db: psycopg.Connection) -> None:
    for i, (outcome, decision, reason, failure) in enumerate([
        ("decided", '{"action": "HOLD"}', None, None),
        ("rejected", None, "invalid_json", None),
        ("failed", None, None, "timeout"),
    ]):
        db.execute(
            "INSERT INTO llm_calls (call_id, request_id, time, model_name, provider, model_id, symbol,"
            " purpose, prompt_hash, system_prompt, user_prompt, outcome, decision, rejection_reason,"
            " failure, http_attempts, latency_ms, input_tokens, output_tokens, cost_usd, from_cache)"
            " VALUES (%s, 'r', %s, 'gpt', 'openai', 'gpt-4o', 'XRP/USDT', 'ask', 'h', 's', 'u', %s,"
            " %s::jsonb, %s, %s, 1, %s, 10, 5, %s, false)",
            (f"c{i}", datetime(2026, 4, 1, 9, i, tzinfo=UTC), outcome, decision, reason, failure,
             100.0 * (i + 1), 0.01 * (i + 1)),
        )
    summaries = DecisionStore(db).call_summaries()
    assert [s.outcome for s in summaries] == [CallOutcome.DECIDED, CallOutcome.REJECTED, CallOutcome.FAILED]
    assert [s.latency_ms for s in summaries] == [100.0, 200.0, 300.0]
    assert sum(s.cost_usd for s in summaries) == pytest.approx(0.06)


def test_model_accounts_tie_closed_trades_to_their_decisions_confidence(db: psycopg.Connection) -> None:
    store = DecisionStore(db)
    store.record([DeliberatedDecision(request_id="r", mode="parallel", decision=_published("d9", "claude", 0))])
    opened = datetime.fromtimestamp(T0 / 1e6, UTC)
    trading = TradingStore(db)
    for pid, pnl in (("llm:claude:d9", 1.5), ("llm:claude:other", -1.0)):
        trading.record_position(Position(
            position_id=pid, account="llm:claude", symbol="XRP/USDT", direction=Direction.LONG, quantity=10.0,
            entry_price=0.5, stop_loss=0.49, take_profit=0.53, opened_at=opened, entry_notional_usdt=5.0,
            equity_at_entry_usdt=1000.0, status=PositionStatus.CLOSED, closed_at=opened,
            exit_price=0.53, exit_reason=OrderPurpose.TAKE_PROFIT, realized_pnl=pnl), "closed")
    (account,) = model_accounts(db)
    assert account.name == "claude" and not account.is_consensus
    assert len(account.positions) == 2
    # Only the position opened for a stored decision is scored, with that decision's confidence.
    assert account.scored_decisions == (ScoredDecision(confidence=0.7, won=True),)
