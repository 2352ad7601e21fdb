"""BENCH llm_bad_answers / llm_bad_answers_traded: a fault run of bad answers through the real SDKs.

At least 1,000 bad replies (out-of-range, wrong sides, NaN/inf, strings as numbers, extra or
missing keys, truncated or malformed JSON, answers talking past the rules, plus 429/5xx, broken
envelopes and dropped connections) are served to five models through fan-outs with every call
stored. An independent judge (``llm_standins.bad_answers``) counts the bad answers that still
became a validated decision: it must be 0.
"""

from __future__ import annotations

import asyncio
import time

from tests.support.llm_standins.fault_run import fault_run

BAD_REPLIES = 1_200


def test_llm_bad_answers(database_url: str) -> None:
    started = time.perf_counter()
    report = asyncio.run(fault_run(database_url, BAD_REPLIES, symbol="BTC/USDT", progress=True))
    elapsed = time.perf_counter() - started
    print(f"\n{report.served} bad replies ({report.text_answers} answers, "
          f"{report.served - report.text_answers} transport faults) -> {report.calls} calls: "
          f"{report.rejected_calls} rejected ({report.stored_rejections} stored with a reason), "
          f"{report.failed_calls} failed, in {elapsed:.1f} s")
    assert report.served >= 1_000
    assert report.stored_rejections == report.rejected_calls == report.text_answers
    print(f"BENCH llm_bad_answers {report.served} answers")
    print(f"BENCH llm_bad_answers_traded {report.traded} answers")
    assert report.traded == 0
