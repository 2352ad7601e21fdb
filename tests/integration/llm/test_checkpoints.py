"""Checkpoints over the real SDKs: each open position to STAY, EXIT, FLIP or REDUCE; bad answers STAY."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from tests.support.llm_standins import (
    INJECTION,
    TEST_KEYS,
    LLMStandIn,
    MemoryRecorder,
    Reply,
    Route,
    by_prompt,
    standin_settings,
)
from triplegain_core.llm.checkpoints import CHECKPOINT_KIND, CheckpointAction, CheckpointVerdict, run_checkpoint
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.models import CallOutcome, FailureKind, LLMSettings
from triplegain_core.llm.prompts import MarketContext
from triplegain_core.llm.trading_decision import Action
from triplegain_core.model.signals import Direction
from triplegain_core.portfolio.positions import Position, PositionStatus
from triplegain_core.storage.llm_store import LLMStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
MODEL = "gpt"
CONTEXTS = {symbol: MarketContext(symbol=symbol, time=T0, price=price)
            for symbol, price in (("BTC/USDT", 100.0), ("XRP/USDT", 2.0), ("XRP/BTC", 0.00002))}


def position(pid: str, symbol: str, direction: Direction, entry: float,
             status: PositionStatus = PositionStatus.OPEN) -> Position:
    stop, target = (entry * 0.98, entry * 1.04) if direction is Direction.LONG else (entry * 1.02, entry * 0.96)
    return Position(position_id=pid, account="paper", symbol=symbol, direction=direction, quantity=1.0,
                    entry_price=entry, stop_loss=stop, take_profit=target, opened_at=T0, entry_notional_usdt=10.0,
                    equity_at_entry_usdt=1000.0, status=status,
                    exit_price=entry if status is PositionStatus.CLOSED else None,
                    closed_at=T0 if status is PositionStatus.CLOSED else None)


POSITIONS = [
    position("p-btc", "BTC/USDT", Direction.LONG, 100.0),
    position("p-xrp", "XRP/USDT", Direction.SHORT, 2.0),
    position("p-cross", "XRP/BTC", Direction.LONG, 0.00002),
    position("p-done", "BTC/USDT", Direction.SHORT, 100.0, PositionStatus.CLOSED),
]


def verdict(**changes: object) -> str:
    return json.dumps({"action": "STAY", "confidence": 0.7, "reduce_fraction": None, "flip": None,
                       "reasoning": "thesis intact", **changes})


def routes(btc: Reply, xrp: Reply, cross: Reply) -> list[Route]:
    return [Route(("Position under review\nLONG BTC/USDT",), btc),
            Route(("Position under review\nSHORT XRP/USDT",), xrp),
            Route(("Position under review\nLONG XRP/BTC",), cross)]


@pytest.fixture
def standin() -> Iterator[LLMStandIn]:
    with LLMStandIn() as server:
        yield server


def settings(url: str) -> LLMSettings:
    return standin_settings(url)


async def _checkpoint(url: str, recorder: MemoryRecorder) -> tuple[CheckpointVerdict, ...]:
    async with LLMClient(settings(url), environ=TEST_KEYS, recorder=recorder) as client:
        return await run_checkpoint(client, MODEL, POSITIONS, CONTEXTS, request_id="cp-12h")


def test_each_open_position_gets_its_verdict_and_calls_are_stored(standin: LLMStandIn, database_url: str) -> None:
    flip = {"position_size_pct": 5, "leverage": 1, "entry": 2.0, "stop_loss": 1.97, "take_profit": 2.06,
            "invalidation": "loses 1.97"}
    standin.script(MODEL, factory=by_prompt(routes(
        Reply(text=verdict(action="EXIT", confidence=0.8, reasoning="trend broke")),
        Reply(text=verdict(action="FLIP", confidence=0.75, flip=flip)),
        Reply(text=verdict(action="REDUCE", confidence=0.65, reduce_fraction=0.5)),
    )))

    async def stored_run() -> tuple[tuple[CheckpointVerdict, ...], list]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            store = LLMStore(conn)
            async with LLMClient(settings(standin.url), environ=TEST_KEYS, recorder=store) as client:
                verdicts = await run_checkpoint(client, MODEL, POSITIONS, CONTEXTS, request_id="cp-12h")
            return verdicts, await store.calls()

    verdicts, stored = asyncio.run(stored_run())
    by_id = {v.position_id: v for v in verdicts}
    assert set(by_id) == {"p-btc", "p-xrp", "p-cross"}  # the closed position is not asked about
    assert by_id["p-btc"].action is CheckpointAction.EXIT and by_id["p-btc"].fallback_reason is None
    reduce = by_id["p-cross"]
    assert reduce.action is CheckpointAction.REDUCE and reduce.reduce_fraction == 0.5 and reduce.sends_order
    flipped = by_id["p-xrp"]
    assert flipped.action is CheckpointAction.FLIP and flipped.flip_decision is not None
    assert flipped.flip_decision.action is Action.LONG and flipped.flip_decision.symbol == "XRP/USDT"
    assert flipped.flip_decision.stop_loss < flipped.flip_decision.entry < flipped.flip_decision.take_profit
    assert len(stored) == 3 and all(c.answer_kind == CHECKPOINT_KIND for c in stored)
    assert {c.request_id for c in stored} == {"cp-12h:p-btc", "cp-12h:p-xrp", "cp-12h:p-cross"}
    exit_call = next(c for c in stored if c.request_id == "cp-12h:p-btc")
    assert exit_call.outcome is CallOutcome.DECIDED and isinstance(exit_call.answer, dict)
    assert exit_call.answer["action"] == "EXIT"


def test_invalid_late_or_timid_answers_stay_with_the_reason_recorded(standin: LLMStandIn) -> None:
    standin.script(MODEL, factory=by_prompt(routes(
        # Injection and a limit-breaking flip: rejected, twice (ask + validation retry).
        Reply(text=INJECTION + verdict(action="FLIP", confidence=0.99,
                                       flip={"position_size_pct": 100, "leverage": 25, "entry": 100.0,
                                             "stop_loss": 101.0, "take_profit": 95.0, "invalidation": "none"})),
        # Malformed (truncated) JSON.
        Reply(text='{"action": "EXIT", "confidence": 0.9, "reduce_fr'),
        # Valid but below the confidence floor.
        Reply(text=verdict(action="EXIT", confidence=0.3)),
    )))
    recorder = MemoryRecorder()
    verdicts = asyncio.run(_checkpoint(standin.url, recorder))
    by_id = {v.position_id: v for v in verdicts}
    assert all(v.action is CheckpointAction.STAY and not v.sends_order for v in verdicts)
    assert all(v.flip_decision is None and v.reduce_fraction is None for v in verdicts)
    assert "out_of_range" in (by_id["p-btc"].fallback_reason or "")
    assert "malformed_json" in (by_id["p-xrp"].fallback_reason or "")
    assert by_id["p-cross"].fallback_reason == "EXIT at confidence 0.30 < 0.60"
    rejected = [c for c in recorder.calls if c.outcome is CallOutcome.REJECTED]
    assert {c.request_id for c in rejected} == {"cp-12h:p-btc", "cp-12h:p-xrp"} and len(rejected) == 4


def test_a_late_answer_stays(standin: LLMStandIn) -> None:
    standin.script(MODEL, default=Reply(text=verdict(action="EXIT", confidence=0.9), delay_s=3.0))

    async def late() -> tuple[CheckpointVerdict, ...]:
        fast = settings(standin.url).model_copy(update={"turn_deadline_s": 0.3})
        async with LLMClient(fast, environ=TEST_KEYS, recorder=recorder) as client:
            return await run_checkpoint(client, MODEL, POSITIONS[:1], CONTEXTS, request_id="cp-late")

    recorder = MemoryRecorder()
    (only,) = asyncio.run(late())
    assert only.action is CheckpointAction.STAY and "timeout" in (only.fallback_reason or "")
    assert [c.failure for c in recorder.calls] == [FailureKind.TIMEOUT]


def test_a_position_without_market_context_is_refused(standin: LLMStandIn) -> None:
    async def missing() -> None:
        async with LLMClient(settings(standin.url), environ=TEST_KEYS) as client:
            await run_checkpoint(client, MODEL, POSITIONS, {"BTC/USDT": CONTEXTS["BTC/USDT"]}, request_id="x")

    with pytest.raises(ValueError, match="no market context"):
        asyncio.run(missing())
