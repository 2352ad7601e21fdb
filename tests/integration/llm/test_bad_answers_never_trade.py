"""Bad model answers, all the way down: through the real SDKs, the deliberation round, the
hand-over to Redis and the trading loop. Four models answer nothing but generated bad answers
(out of range, wrong sides, NaN, strings for numbers, truncated or malformed JSON, text talking
past the rules) and faults (429, 5xx, broken envelopes, dropped connections); one answers well.
Only the good model's account ever holds an order; every bad answer is a recorded rejection."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator

import psycopg
import pytest
import redis

from streamer.executor.loop import TradingLoop
from tests.support.llm_standins import TEST_KEYS, LLMStandIn, Reply, standin_settings, user_text
from tests.support.llm_standins.bad_answers import bad_replies
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.contracts.decision_streams import DecisionStream
from triplegain_core.contracts.hot_state import HotStatePublisher, HotStateReader
from triplegain_core.decisions.handover import hand_over
from triplegain_core.decisions.intake import DecisionIntake
from triplegain_core.llm.deliberation_round import deliberate
from triplegain_core.model.market import US_PER_MINUTE, Candle
from triplegain_core.storage.decision_ledger import DecisionLedger
from triplegain_core.storage.llm_store import recorded_client
from triplegain_core.storage.market_context import market_contexts
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.trading_store import TradingStore

pytestmark = pytest.mark.integration

SYMBOL = "XRP/USDT"
PRICE = 0.5
T0 = 1_780_000_000 * 1_000_000 // US_PER_MINUTE * US_PER_MINUTE
ROUNDS = 8
BAD_MODELS = ("gpt", "grok", "deepseek", "qwen")
_PRICE = re.compile(r"Last price: ([0-9.eE+-]+)")


def _good(body: dict) -> Reply:
    price = float(_PRICE.search(user_text(body)).group(1))
    return Reply(text=json.dumps({
        "action": "LONG", "symbol": SYMBOL, "confidence": 0.8, "position_size_pct": 5, "leverage": 1,
        "entry": price, "stop_loss": price * 0.99, "take_profit": price * 1.02,
        "invalidation": "a close under the stop", "reasoning": "trend"}))


@pytest.fixture
def standin() -> Iterator[LLMStandIn]:
    with LLMStandIn() as server:
        bad = iter(list(bad_replies(ROUNDS * 2 * len(BAD_MODELS) + 50, SYMBOL)))
        lock = threading.Lock()

        def next_bad(body: dict) -> Reply:
            with lock:
                return next(bad, Reply(status=503))
        for name in BAD_MODELS:
            server.script(name, factory=next_bad)
        server.script("claude", factory=_good)
        yield server


def test_only_the_good_models_account_ever_trades(
    standin: LLMStandIn, db: psycopg.Connection, redis_client: redis.Redis, database_url: str, redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in TEST_KEYS.items():
        monkeypatch.setenv(name, value)
    settings = Settings(symbols=(SYMBOL,), llm=standin_settings(standin.url, backoff_s=0.001, backoff_max_s=0.002),
                        strategies=StrategySettings(enabled=(), technical_agent=False))
    intake = DecisionIntake(DecisionStream(redis_client), DecisionLedger(db), start_id="0")
    loop = TradingLoop(settings, HotStateReader(redis_client), TradingStore(db), start_stream_id="0",
                       decisions=intake)
    publisher, market = HotStatePublisher(redis_client), MarketStore(db)

    async def rounds() -> int:
        published = 0
        async with recorded_client(settings.llm, database_url, redis_url) as client:
            for n in range(ROUNDS):
                # A closed candle and the one forming after it, in the store and on the stream.
                candles = [Candle(SYMBOL, "1m", T0 + (n + i) * US_PER_MINUTE, PRICE, PRICE, PRICE, PRICE, 1.0, 1)
                           for i in range(2)]
                market.write_candles(candles)
                publisher.publish([], [], candles[:1], {"ts_us": 0})
                loop.cycle()
                result = await deliberate(client, market_contexts(db, (SYMBOL,), "llm:consensus"), f"bad-{n}")
                states = hand_over(DecisionLedger(db), DecisionStream(redis_client), result.records,
                                   human_approval=False)
                published += sum(state.value == "approved" for state in states.values())
                loop.cycle()
        return published

    published = asyncio.run(rounds())
    assert published == ROUNDS  # the good model's decision, each round; never a consensus of one
    traded = {account for (account,) in db.execute("SELECT DISTINCT account FROM orders").fetchall()}
    assert traded == {"llm:claude"}
    bad_calls = db.execute(
        "SELECT outcome, count(*) FROM llm_calls WHERE model_name <> 'claude' GROUP BY outcome").fetchall()
    assert dict(bad_calls).get("decided", 0) == 0
    stored = db.execute("SELECT count(*) FROM llm_calls WHERE outcome = 'rejected' AND rejection_reason IS NOT NULL"
                        ).fetchone()[0]
    assert stored == dict(bad_calls).get("rejected", 0) > 0
    assert db.execute("SELECT count(*) FROM llm_decisions WHERE source <> 'claude'").fetchone()[0] == 0
