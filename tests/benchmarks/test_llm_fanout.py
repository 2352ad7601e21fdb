"""BENCH llm_fanout_overhead_ms: what a five-model fan-out adds over its slowest model.

Five stand-in models (one per provider SDK), served from another process like remote providers,
answer after fixed, different delays; the overhead of
a round is its wall time minus the slowest delay, i.e. the client's own work: five SDK requests,
parsing and validation, gathering. The median over the rounds is reported. Calls are not stored
here (a database write is the store's cost, not the fan-out's).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from datetime import UTC, datetime

from tests.support.llm_standins import TEST_KEYS, Reply, StandInProcess, standin_settings
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.prompts import MarketContext, build_prompt

DELAYS_S = {"claude": 0.120, "gpt": 0.090, "grok": 0.150, "deepseek": 0.060, "qwen": 0.180}
ROUNDS = 30
WARMUP = 3
ANSWER = json.dumps({
    "action": "LONG", "symbol": "BTC/USDT", "confidence": 0.71, "position_size_pct": 8, "leverage": 1,
    "entry": 100_000.0, "stop_loss": 98_600.0, "take_profit": 103_500.0,
    "invalidation": "1h close below 98,600", "reasoning": "breakout with volume, ADX 28",
})


async def measure() -> list[float]:
    prompt = build_prompt(MarketContext(symbol="BTC/USDT", time=datetime(2026, 3, 1, tzinfo=UTC),
                                        price=100_000.0, indicators={"rsi_14": 61.0, "adx_14": 28.0}))
    slowest_s = max(DELAYS_S.values())
    overheads = []
    replies = {name: Reply(text=ANSWER, delay_s=delay) for name, delay in DELAYS_S.items()}
    with StandInProcess(replies) as standin:
        async with LLMClient(standin_settings(standin.url), environ=TEST_KEYS) as client:
            for round_no in range(WARMUP + ROUNDS):
                started = time.perf_counter()
                result = await client.fan_out(prompt, symbol="BTC/USDT", request_id=f"bench-{round_no}")
                wall_s = time.perf_counter() - started
                assert len(result.decisions) == len(DELAYS_S), result
                if round_no >= WARMUP:
                    overheads.append((wall_s - slowest_s) * 1000)
    return overheads


def test_llm_fanout_overhead_ms() -> None:
    overheads = asyncio.run(measure())
    print(f"\nfan-out of {len(DELAYS_S)} models over {len(overheads)} rounds, slowest stand-in "
          f"{max(DELAYS_S.values()) * 1000:.0f} ms: overhead min {min(overheads):.2f} ms, "
          f"p90 {statistics.quantiles(overheads, n=10)[-1]:.2f} ms")
    print(f"BENCH llm_fanout_overhead_ms {statistics.median(overheads):.2f} ms")
