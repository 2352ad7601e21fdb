"""Human approval on real servers: pending decisions are published only when a person approves
them in time; expired or rejected ones never reach the executor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis

from streamer.cli.main import main
from triplegain_core.contracts.decision_streams import DecisionStream
from triplegain_core.decisions.approval import ApprovalOutcome, approve, pending_decisions, reject
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.decisions.published import DeliberatedDecision, PublishedDecision
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.model.market import US_PER_MINUTE, Candle, datetime_to_us
from triplegain_core.storage.decision_events import DecisionEventStore
from triplegain_core.storage.decision_ledger import DecisionLedger
from triplegain_core.storage.decision_store import DecisionStore
from triplegain_core.storage.market_store import MarketStore

MADE = datetime(2026, 8, 3, 10, tzinfo=UTC)


def _pending(db: psycopg.Connection, decision_id: str, ttl_s: float = 600) -> PublishedDecision:
    decision = TradingDecision(action=Action.LONG, symbol="XRP/USDT", confidence=0.8, position_size_pct=5.0,
                               leverage=1.0, entry=0.5, stop_loss=0.495, take_profit=0.51,
                               invalidation="x", reasoning="y", model="claude")
    published = PublishedDecision.make(decision_id, "llm:claude", "claude", decision, datetime_to_us(MADE), ttl_s)
    DecisionStore(db).record([DeliberatedDecision(request_id="r", mode="parallel", decision=published)])
    DecisionEventStore(db).start(decision_id, MADE, "claude", [(DecisionState.PENDING, "awaiting human approval")])
    return published


def test_an_approved_decision_is_published_once(db: psycopg.Connection, redis_client: redis.Redis) -> None:
    published = _pending(db, "d1")
    assert pending_decisions(DecisionLedger(db)) == [published]
    result = approve(DecisionLedger(db), DecisionStream(redis_client), "d1", by="alice",
                     now=MADE + timedelta(minutes=2))
    assert result.outcome is ApprovalOutcome.APPROVED
    assert DecisionStream(redis_client).after("0")[1] == [published]
    history = DecisionEventStore(db).history("d1")
    assert history[-1].target is DecisionState.APPROVED and history[-1].by == "alice"
    assert pending_decisions(DecisionLedger(db)) == []
    with pytest.raises(ValueError, match="not pending"):
        approve(DecisionLedger(db), DecisionStream(redis_client), "d1", by="alice", now=MADE)


def test_approval_after_the_deadline_expires_the_decision(db: psycopg.Connection, redis_client: redis.Redis) -> None:
    _pending(db, "d2", ttl_s=300)
    # The market moved on: the latest stored candle closes 6 minutes after the decision.
    MarketStore(db).write_candles([Candle("XRP/USDT", "1m", datetime_to_us(MADE) + 5 * US_PER_MINUTE,
                                          0.5, 0.5, 0.5, 0.5, 1.0, 1)])
    result = approve(DecisionLedger(db), DecisionStream(redis_client), "d2", by="bob")
    assert result.outcome is ApprovalOutcome.EXPIRED and "not published" in result.message
    assert DecisionStream(redis_client).after("0") == ("0", [])
    assert DecisionEventStore(db).state("d2") is DecisionState.EXPIRED


def test_a_rejected_decision_is_never_published(db: psycopg.Connection, redis_client: redis.Redis) -> None:
    _pending(db, "d3")
    result = reject(DecisionLedger(db), "d3", by="carol", reason="not in this news")
    assert result.outcome is ApprovalOutcome.REJECTED
    assert DecisionEventStore(db).history("d3")[-1].reason == "not in this news"
    assert DecisionStream(redis_client).after("0") == ("0", [])
    with pytest.raises(KeyError):
        approve(DecisionLedger(db), DecisionStream(redis_client), "nope", by="carol")


def test_the_cli_lists_approves_and_refuses_clearly(
    db: psycopg.Connection, redis_client: redis.Redis, database_url: str, redis_url: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TRIPLEGAIN_DATABASE_URL", database_url)
    monkeypatch.setenv("TRIPLEGAIN_REDIS_URL", redis_url)
    monkeypatch.delenv("TRIPLEGAIN_CONFIG", raising=False)
    _pending(db, "d5")
    assert main(["decision", "list"]) == 0
    assert "d5  llm:claude  LONG XRP/USDT" in capsys.readouterr().out
    assert main(["decision", "approve", "d5", "--by", "dana"]) == 0
    assert "approved by dana" in capsys.readouterr().out
    assert [d.decision_id for d in DecisionStream(redis_client).after("0")[1]] == ["d5"]
    assert main(["decision", "approve", "d5", "--by", "dana"]) == 2
    assert "not pending" in capsys.readouterr().err
    assert main(["decision", "reject", "nope", "--by", "dana", "--reason", "x"]) == 2
    assert main(["decision", "list"]) == 0
    assert "no decision is waiting" in capsys.readouterr().out
