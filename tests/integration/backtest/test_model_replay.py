"""Answers recorded in a paper run replay bit for bit in a backtest, on real PostgreSQL.

The paper run is the live path: the deliberation round reads its contexts from the database
(``market_contexts``, as the ``llm_deliberation`` asset does) and asks the models through the
real SDKs (a local stand-in server at the network boundary), recording every answer. The
backtest over the same candles then holds its round at the same market time from what it
knows itself (the history, its kernel's accounts), builds the same prompts, finds every answer
by its prompt hash, and never reaches the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from streamer.cli.main import main
from tests.support.llm_standins.answers import decision_json
from tests.support.llm_standins.models import TEST_KEYS, standin_model
from tests.support.llm_standins.servers import LLMStandIn, Reply
from triplegain_core.backtest.engine import run_backtest
from triplegain_core.backtest.history import history_from_candles
from triplegain_core.backtest.models import ModelRounds
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.decisions.published import model_account
from triplegain_core.llm.answer_cache import CacheMode
from triplegain_core.llm.deliberation_round import deliberate
from triplegain_core.llm.models import LLMSettings, Provider
from triplegain_core.llm.voting import CONSENSUS_MODEL
from triplegain_core.model.market import US_PER_MINUTE, Candle, us_to_datetime
from triplegain_core.storage.llm_store import llm_store, recorded_client
from triplegain_core.storage.market_context import market_contexts
from triplegain_core.storage.market_store import MarketStore

pytestmark = pytest.mark.integration

SYMBOL = "XRP/USDT"
HOUR_US = 60 * US_PER_MINUTE
ROUND_US = 1_780_000_000 * 1_000_000 // HOUR_US * HOUR_US  # on the hour: the backtest's round falls there
FIRST_US = ROUND_US - 400 * US_PER_MINUTE  # enough for the indicators and the regime
DECIDE_US = ROUND_US - 30 * US_PER_MINUTE  # the backtests decide from here: one round, at ROUND_US
LAST_US = ROUND_US + 45 * US_PER_MINUTE


def _candles() -> list[Candle]:
    minutes = (LAST_US - FIRST_US) // US_PER_MINUTE
    rng = np.random.default_rng(11)
    closes = 0.5 * np.exp(np.cumsum(rng.normal(0, 0.001, minutes)))
    spread = np.abs(rng.normal(0, 0.0005, minutes))
    return [Candle(SYMBOL, "1m", FIRST_US + i * US_PER_MINUTE, float(c), float(c * (1 + s)), float(c * (1 - s)),
                   float(c), float(100 + i), 3)
            for i, (c, s) in enumerate(zip(closes, spread, strict=True))]


@pytest.fixture
def standin() -> Iterator[LLMStandIn]:
    with LLMStandIn() as server:
        yield server


def test_answers_recorded_in_a_paper_run_replay_bit_for_bit(
    standin: LLMStandIn, db: psycopg.Connection, database_url: str, redis_url: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    for name, value in TEST_KEYS.items():
        monkeypatch.setenv(name, value)
    candles = _candles()
    market = next(c.close for c in candles if c.close_time_us == ROUND_US)
    standin.script("claude", default=Reply(decision_json(SYMBOL, "LONG", 0.8, entry=round(market * 1.01, 6))))
    standin.script("gpt", default=Reply(decision_json(SYMBOL, "LONG", 0.7, entry=round(market * 1.005, 6))))
    llm = LLMSettings(models=(standin_model("claude", Provider.ANTHROPIC, standin.url),
                              standin_model("gpt", Provider.OPENAI, standin.url)))
    settings = Settings(symbols=(SYMBOL,), llm=llm, strategies=StrategySettings(enabled=(), technical_agent=False))

    # The paper run: the store holds the candles up to the one forming at the round.
    MarketStore(db).write_candles([c for c in candles if c.open_time_us <= ROUND_US])
    contexts = market_contexts(db, settings.symbols, model_account(CONSENSUS_MODEL))
    assert [int(c.time.timestamp() * 1_000_000) for c in contexts] == [ROUND_US]
    assert contexts[0].indicators and contexts[0].regime is not None  # the whole context, not a bare one

    async def paper_round() -> None:
        async with recorded_client(llm, database_url, redis_url, CacheMode.RECORD) as client:
            await deliberate(client, contexts, "paper-round", settings.deliberation)

    asyncio.run(paper_round())
    assert len(standin.requests) == 2
    recorded = db.execute("SELECT model_name, prompt_hash, raw_answer, decision FROM llm_calls"
                          " WHERE request_id LIKE 'paper-round%' ORDER BY model_name").fetchall()
    assert [row[0] for row in recorded] == ["claude", "gpt"]

    result = run_backtest(settings, history_from_candles(candles), decide_from_us=DECIDE_US,
                          models=ModelRounds(answers=lambda: llm_store(database_url), every_minutes=60))
    assert len(standin.requests) == 2  # the backtest asked no provider
    replayed = sorted((c.model_name, c.prompt_hash, c.raw_answer,
                       None if c.decision is None else c.decision.model_dump(mode="json"))
                      for c in result.model_calls)
    assert replayed == [(name, digest, raw, decision) for name, digest, raw, decision in recorded]
    assert all(c.from_cache for c in result.model_calls)
    for name in ("llm:claude", "llm:gpt", "llm:consensus"):
        assert result.account(name).trail.fills, name  # each model and the consensus traded its own account

    # The command does the same from the configuration (its warm-up before --from: the candles
    # the round's context reads), and stores the model accounts.
    monkeypatch.setenv("TRIPLEGAIN_DATABASE_URL", database_url)
    monkeypatch.setenv("TRIPLEGAIN_DATA_DIR", str(tmp_path))
    config = tmp_path / "triplegain.toml"
    config.write_text(f"""symbols = ["{SYMBOL}"]
[strategies]
enabled = []
technical_agent = false
[[llm.models]]
name = "claude"
provider = "anthropic"
model_id = "claude"
base_url = "{standin.url}"
[[llm.models]]
name = "gpt"
provider = "openai"
model_id = "gpt"
base_url = "{standin.url}/v1"
""")
    start = us_to_datetime(DECIDE_US).isoformat()
    assert main(["--config", str(config), "backtest", "--symbols", SYMBOL, "--from", start,
                 "--models"]) == 0
    out = capsys.readouterr().out
    assert "models: 2 answers replayed from the recordings" in out and "llm:consensus" in out
    assert len(standin.requests) == 2
    kinds = dict(db.execute("SELECT account, kind FROM backtest_accounts").fetchall())
    assert kinds["llm:claude"] == "model" and kinds["llm:consensus"] == "model"

