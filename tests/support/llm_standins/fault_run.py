"""A fault run: many bad replies through the real SDKs, the client and the store, then judged."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from tests.support.llm_standins.bad_answers import bad_replies, rule_abiding
from tests.support.llm_standins.models import TEST_KEYS, standin_settings
from tests.support.llm_standins.servers import LLMStandIn, Reply
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.models import CallOutcome
from triplegain_core.llm.prompts import MarketContext, build_prompt
from triplegain_core.storage.llm_store import LLMStore

MODELS = ("claude", "gpt", "grok", "deepseek", "qwen")
_T0 = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FaultRunReport:
    """What the judge found after a fault run."""

    served: int
    overrun: int
    text_answers: int
    traded: int
    calls: int
    rejected_calls: int
    failed_calls: int
    http_attempts: int
    stored_rejections: int


async def fault_run(database_url: str, count: int, symbol: str = "BTC/USDT",
                    progress: bool = False) -> FaultRunReport:
    """Serve ``count`` bad replies to five models over fan-outs; judge every resulting call."""
    async with LLMStandIn() as standin:
        return await _run(standin, database_url, count, symbol, progress)


async def _run(standin: LLMStandIn, database_url: str, count: int, symbol: str,
               progress: bool) -> FaultRunReport:
    replies = iter(list(bad_replies(count, symbol)))
    lock = threading.Lock()
    served: list[Reply] = []
    overrun: list[Reply] = []

    def next_bad(body: dict) -> Reply:
        with lock:
            reply = next(replies, None)
            if reply is None:
                overrun.append(Reply(status=503))  # past the end of the run: not counted
                return overrun[-1]
            served.append(reply)
            return reply

    for name in MODELS:
        standin.script(name, factory=next_bad)
    settings = standin_settings(standin.url, backoff_s=0.001, backoff_max_s=0.002)
    prompt = build_prompt(MarketContext(symbol=symbol, time=_T0, price=100.0))
    calls = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        store = LLMStore(conn)
        async with LLMClient(settings, environ=TEST_KEYS, recorder=store) as client:
            for round_no in itertools.count():
                with lock:
                    if len(served) >= count:
                        break
                result = await client.fan_out(prompt, symbol=symbol, request_id=f"fault-{round_no}")
                calls += [c for r in result.results for c in r.calls]
                if progress and round_no % 20 == 0:
                    print(f"  fault run: {len(served)}/{count} bad replies served", flush=True)
        rows = await (await conn.execute(
            "SELECT count(*) FROM llm_calls WHERE outcome = 'rejected' AND rejection_reason IS NOT NULL"
        )).fetchone()

    bad_texts = {reply.text for reply in served if reply.status == 200 and reply.raw_body is None
                 and not reply.drop}
    traded = 0
    for call in calls:
        if call.outcome is not CallOutcome.DECIDED:
            continue
        # Every served reply was bad, so any validated decision is a bad answer traded; the
        # decision is also judged on its own values, independently of the parser.
        values = call.decision.model_dump(mode="json", exclude={"model"})
        traded += 1 if call.raw_answer in bad_texts or not rule_abiding(values, symbol) else 0
    return FaultRunReport(
        served=len(served),
        overrun=len(overrun),
        text_answers=sum(1 for r in served if r.status == 200 and r.raw_body is None and not r.drop),
        traded=traded,
        calls=len(calls),
        rejected_calls=sum(1 for c in calls if c.outcome is CallOutcome.REJECTED),
        failed_calls=sum(1 for c in calls if c.outcome is CallOutcome.FAILED),
        http_attempts=sum(c.http_attempts for c in calls),
        stored_rejections=rows[0],
    )
