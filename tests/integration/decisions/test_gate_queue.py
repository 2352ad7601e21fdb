"""The LLM gate off the trading loop (real SDKs against the stand-in): submitting never waits,
confirmed signals come back, a veto or a failure holds the signal back, a late verdict is stale."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.support.gate_market import MODEL, answer, baseline, snapshot
from tests.support.llm_standins import TEST_KEYS, LLMStandIn, MemoryRecorder, Reply, standin_settings
from triplegain_core.decisions.gate import GateDecision, GateOutcome
from triplegain_core.decisions.gate_queue import STALE_REASON, GateQueue
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.gate import LLMSignalGate
from triplegain_core.storage.gate_store import GateStore

pytestmark = pytest.mark.integration


@pytest.fixture
def standin() -> Iterator[LLMStandIn]:
    with LLMStandIn() as server:
        yield server


def _gate(standin: LLMStandIn, deadline_s: float = 5.0) -> LLMSignalGate:
    settings = standin_settings(standin.url)
    return LLMSignalGate(lambda: LLMClient(settings, environ=TEST_KEYS, recorder=MemoryRecorder()), MODEL,
                         deadline_s=deadline_s)


def _until_decided(queue: GateQueue, count: int, limit_s: float = 20.0) -> list[GateDecision]:
    decided: list[GateDecision] = []
    deadline = time.monotonic() + limit_s
    while len(decided) < count and time.monotonic() < deadline:
        decided += queue.collect()
        time.sleep(0.01)
    return decided


def test_submit_returns_at_once_and_the_verdicts_come_back_later(standin: LLMStandIn) -> None:
    standin.script(MODEL, Reply(text=answer("LONG", 0.8), delay_s=0.5), Reply(text=answer("HOLD", 0.9)))
    market = snapshot()
    with _gate(standin) as gate, GateQueue(gate, workers=1) as queue:
        queue.submit(baseline(market), market)
        queue.submit(baseline(market).model_copy(update={"signal_id": "second"}), market)
        # The model takes half a second: nothing is decided yet, and the caller did not wait.
        assert queue.collect() == [] and queue.pending == 2
        first, second = _until_decided(queue, 2)
    assert first.outcome is GateOutcome.CONFIRMED and first.passed
    assert second.outcome is GateOutcome.VETOED and not second.passed and second.signal_id == "second"


def test_a_failed_answer_is_vetoed_and_a_late_one_is_stale(standin: LLMStandIn) -> None:
    standin.script(MODEL, Reply(text="{not json"), Reply(text="{not json"), Reply(text=answer(), delay_s=3.0))
    market = snapshot()
    with _gate(standin, deadline_s=2.0) as gate, GateQueue(gate, workers=2, max_wait_s=1.0) as queue:
        queue.submit(baseline(market), market)
        failed = _until_decided(queue, 1)
        queue.submit(baseline(market).model_copy(update={"signal_id": "late"}), market)
        (stale,) = _until_decided(queue, 1)
    assert failed[0].outcome is GateOutcome.GATE_FAILED_VETOED and not failed[0].passed
    assert stale.signal_id == "late" and not stale.passed and stale.gate_reason == STALE_REASON


def test_gate_decisions_are_stored_with_every_reason(standin: LLMStandIn, db: psycopg.Connection) -> None:
    standin.script(MODEL, Reply(text=answer("LONG", 0.8)), Reply(text=answer("SHORT", 0.9)))
    market = snapshot()
    with _gate(standin) as gate, GateQueue(gate, workers=1) as queue:
        queue.submit(baseline(market), market)
        queue.submit(baseline(market).model_copy(update={"signal_id": "vetoed"}), market)
        decided = _until_decided(queue, 2)
    store = GateStore(db)
    store.record(decided)
    store.record(decided)  # once only
    assert store.decisions() == decided
    assert [d.passed for d in store.decisions("trend")] == [True, False]
    assert store.decisions()[0].baseline_reason == "EMA cross up"
