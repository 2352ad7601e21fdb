"""The LLM side of Dagster on real servers: ``llm_deliberation`` through the real SDKs against
the stand-ins, configured from a TOML file; ``model_performance`` scoring what followed;
``position_checkpoints``; the strong-signal sensor; and the plain statement when no model is
configured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import redis

from tests.support.llm_standins import TEST_KEYS, LLMStandIn, Reply
from triplegain_core.contracts.decision_streams import DecisionStream, StrongSignalStream
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.decisions.published import StrongSignal
from triplegain_core.model.market import US_PER_MINUTE, Candle, datetime_to_us
from triplegain_core.model.signals import Direction
from triplegain_core.portfolio.positions import Position
from triplegain_core.storage.decision_events import DecisionEventStore
from triplegain_core.storage.decision_store import DecisionStore
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.model_scores import latest_weights
from triplegain_core.storage.trading_store import TradingStore
from triplegain_dagster.defs.deliberation.checkpoints import position_checkpoints
from triplegain_dagster.defs.deliberation.model_performance import model_performance
from triplegain_dagster.defs.deliberation.rounds import llm_deliberation
from triplegain_dagster.defs.deliberation.triggers import strong_signal_sensor
from triplegain_dagster.resources import LLMResource, PostgresResource, RedisResource

pytestmark = pytest.mark.integration

T0 = datetime_to_us(datetime(2026, 6, 1, 8, tzinfo=UTC))
MINUTES = 90
MODELS = ("claude", "gpt", "grok", "deepseek")


def _candles(symbol: str, price: float, minutes: int, start_minute: int = 0, drift: float = 0.0) -> list[Candle]:
    out = []
    for m in range(start_minute, start_minute + minutes):
        p = price * (1 + drift * m)
        out.append(Candle(symbol, "1m", T0 + m * US_PER_MINUTE, p, p * 1.001, p * 0.999, p, 10.0, 5))
    return out


def _answer(symbol: str, price: float) -> str:
    return json.dumps({"action": "LONG", "symbol": symbol, "confidence": 0.8, "position_size_pct": 10,
                       "leverage": 1, "entry": price, "stop_loss": price * 0.99, "take_profit": price * 1.005,
                       "invalidation": "falls under the stop", "reasoning": "uptrend"})


def _config(path: Path, url: str, models: tuple[str, ...], extra: str = "") -> Path:
    providers = {"claude": "anthropic", "gpt": "openai", "grok": "xai", "deepseek": "deepseek"}
    lines = [f'fallback_chain = ["{models[0]}"]', "backoff_s = 0.01", "backoff_max_s = 0.05"]
    text = extra + "[llm]\n" + "\n".join(lines) + "\n"
    for name in models:
        base = url if providers[name] == "anthropic" else f"{url}/v1"
        text += (f'\n[[llm.models]]\nname = "{name}"\nprovider = "{providers[name]}"\nmodel_id = "{name}"\n'
                 f'base_url = "{base}"\ntimeout_s = 5.0\n'
                 "prices = { input_usd_per_mtok = 3.0, output_usd_per_mtok = 15.0 }\n")
    path.write_text(text)
    return path


@pytest.fixture
def standin() -> Iterator[LLMStandIn]:
    with LLMStandIn() as server:
        yield server


@pytest.fixture
def market(db: psycopg.Connection) -> None:
    MarketStore(db).write_candles(_candles("XRP/USDT", 0.5, MINUTES) + _candles("BTC/USDT", 60_000.0, MINUTES))


@pytest.fixture
def resources(database_url: str, redis_url: str, tmp_path: Path) -> dict[str, object]:
    return {
        "postgres": PostgresResource(database_url=database_url, data_dir=str(tmp_path)),
        "redis": RedisResource(redis_url=redis_url),
        "llm": LLMResource(),
    }


def _metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, object]:
    (materialization,) = result.asset_materializations_for_node(node)
    return {key: value.value for key, value in materialization.metadata.items()}


def test_a_round_publishes_each_models_and_the_consensus_decision_and_scores_them(
    standin: LLMStandIn, market: None, resources: dict[str, object], db: psycopg.Connection,
    redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIPLEGAIN_CONFIG", str(_config(tmp_path / "triplegain.toml", standin.url, MODELS)))
    for name, value in TEST_KEYS.items():
        monkeypatch.setenv(name, value)

    def reply(body: dict) -> Reply:
        text = json.dumps(body)
        return Reply(text=_answer("XRP/USDT", 0.5) if "XRP/USDT" in text else _answer("BTC/USDT", 60_000.0))
    for name in MODELS:
        standin.script(name, factory=reply)

    result = dg.materialize([llm_deliberation], resources=resources)
    assert result.success
    meta = _metadata(result, "llm_deliberation")
    assert meta["status"] == "ready" and meta["published"] == 2 * (len(MODELS) + 1)
    assert "consensus" in meta["votes"] and "4 of 4 models for LONG" in meta["votes"]

    _, published = DecisionStream(redis_client).after("0")
    accounts = sorted({d.account for d in published})
    assert accounts == sorted([f"llm:{m}" for m in MODELS] + ["llm:consensus"])
    # The newest stored candle may still be forming: the round decides at the close before it.
    assert {d.market_time_us for d in published} == {T0 + (MINUTES - 1) * US_PER_MINUTE}
    stored = DecisionStore(db).decisions()
    assert len(stored) == len(published) and all(r.tradeable for r in stored)
    events = DecisionEventStore(db)
    assert {events.state(r.decision.decision_id) for r in stored} == {DecisionState.APPROVED}
    calls = db.execute("SELECT count(*), count(*) FILTER (WHERE outcome = 'decided') FROM llm_calls").fetchone()
    assert calls == (2 * len(MODELS), 2 * len(MODELS))
    # No key reached the database: the calls hold prompts and answers only.
    dump = db.execute("SELECT string_agg(system_prompt || user_prompt || raw_answer, '') FROM llm_calls").fetchone()[0]
    assert all(key not in dump for key in TEST_KEYS.values())

    # The market then rises 0.6% within the hour: every LONG reaches its take-profit.
    MarketStore(db).write_candles(_candles("XRP/USDT", 0.5, 60, MINUTES, drift=0.0001)
                                  + _candles("BTC/USDT", 60_000.0, 60, MINUTES, drift=0.0001))
    scored = dg.materialize([model_performance], resources=resources)
    assert scored.success
    meta = _metadata(scored, "model_performance")
    assert meta["models"] == len(MODELS) + 1 and meta["scored_decisions"] == 2 * (len(MODELS) + 1)
    rows = db.execute("SELECT model_name, scored, hit_rate FROM model_scores ORDER BY model_name").fetchall()
    assert rows == sorted([(m, 2, 1.0) for m in MODELS] + [("consensus", 2, 1.0)])
    assert set(latest_weights(db)) == {*MODELS, "consensus"}
    assert "**consensus**" in meta["leaderboard"] and all(m in meta["leaderboard"] for m in MODELS)


def test_with_no_model_configured_the_round_says_so_and_publishes_nothing(
    market: None, resources: dict[str, object], db: psycopg.Connection, redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in TEST_KEYS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")
    result = dg.materialize([llm_deliberation], resources=resources)
    assert result.success
    meta = _metadata(result, "llm_deliberation")
    assert meta["status"] == "no_models_configured" and meta["published"] == 0
    assert "trading on the rules alone" in meta["summary"]
    assert DecisionStream(redis_client).after("0") == ("0", [])
    assert DecisionStore(db).decisions() == []


def test_an_empty_market_is_reported_not_deliberated(resources: dict[str, object]) -> None:
    result = dg.materialize([llm_deliberation], resources=resources)
    assert result.success
    assert _metadata(result, "llm_deliberation")["status"] == "no market data"


def test_strong_signals_request_one_round_each_burst(redis_client: redis.Redis, redis_url: str) -> None:
    resources = {"redis": RedisResource(redis_url=redis_url)}
    with dg.build_sensor_context(resources=resources) as context:
        first = strong_signal_sensor(context)
    assert first.run_requests == [] and "No new strong signal" in first.skip_reason.skip_message

    stream = StrongSignalStream(redis_client)
    for i, strength in enumerate((0.82, 0.95)):
        stream.publish(StrongSignal(signal_id=f"s{i}", strategy="volatility_breakout", symbol="XRP/USDT",
                                    direction=Direction.LONG, strength=strength, ts_us=T0 + i))
    with dg.build_sensor_context(resources=resources, cursor=first.cursor) as context:
        burst = strong_signal_sensor(context)
    (request,) = burst.run_requests
    assert request.tags["signal"] == "s1" and request.tags["strength"] == "0.95"
    with dg.build_sensor_context(resources=resources, cursor=burst.cursor) as context:
        again = strong_signal_sensor(context)
    assert again.run_requests == []  # the same signals never ask twice


@pytest.mark.parametrize("chosen_by", ["file", "run config"])
def test_a_debate_round_configured_in_the_file_trades_the_debate_account(
    standin: LLMStandIn, market: None, resources: dict[str, object], redis_client: redis.Redis,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chosen_by: str,
) -> None:
    # The run config (as the weekly council schedule sets it) overrides the file's mode.
    extra = '[deliberation]\nmode = "debate"\n\n' if chosen_by == "file" else ""
    run_config = {} if chosen_by == "file" else {"ops": {"llm_deliberation": {"config": {"mode": "DEBATE"}}}}
    monkeypatch.setenv("TRIPLEGAIN_CONFIG", str(_config(tmp_path / "t.toml", standin.url, MODELS[:3], extra)))
    for name, value in TEST_KEYS.items():
        monkeypatch.setenv(name, value)

    def reply(body: dict) -> Reply:
        text = json.dumps(body)
        if "BULL researcher" in text or "BEAR researcher" in text:
            stance = "bull" if "BULL researcher" in text else "bear"
            return Reply(text=json.dumps({"stance": stance, "thesis": "t", "points": ["p"], "confidence": 0.6}))
        return Reply(text=_answer("XRP/USDT", 0.5) if "XRP/USDT" in text else _answer("BTC/USDT", 60_000.0))
    for name in MODELS[:3]:
        standin.script(name, factory=reply)
    result = dg.materialize([llm_deliberation], resources=resources, run_config=run_config)
    meta = _metadata(result, "llm_deliberation")
    assert meta["mode"] == "debate" and meta["published"] == 2
    assert "manager: claude" in meta["panels"]
    _, published = DecisionStream(redis_client).after("0")
    assert {d.account for d in published} == {"llm:debate"}


def _open_position(db: psycopg.Connection, account: str, pid: str, symbol: str, entry: float) -> None:
    opened = datetime.fromtimestamp(T0 / 1e6, UTC)
    TradingStore(db).record_position(Position(
        position_id=pid, account=account, symbol=symbol, direction=Direction.LONG, quantity=1.0,
        entry_price=entry, stop_loss=entry * 0.99, take_profit=entry * 1.02, opened_at=opened,
        entry_notional_usdt=entry, equity_at_entry_usdt=1000.0), "opened")


def _checkpoint_answer(action: str, reduce: float | None = None) -> str:
    return json.dumps({"action": action, "confidence": 0.8, "reduce_fraction": reduce, "flip": None,
                       "reasoning": "momentum faded"})


def test_checkpoints_exit_and_flip_through_the_accounts_own_model_and_reduce_sends_nothing(
    standin: LLMStandIn, market: None, resources: dict[str, object], db: psycopg.Connection,
    redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIPLEGAIN_CONFIG", str(_config(tmp_path / "t.toml", standin.url, MODELS[:3])))
    for name, value in TEST_KEYS.items():
        monkeypatch.setenv(name, value)
    _open_position(db, "llm:claude", "llm:claude:d1", "XRP/USDT", 0.5)
    _open_position(db, "llm:gpt", "llm:gpt:d2", "BTC/USDT", 60_000.0)
    _open_position(db, "llm:grok", "llm:grok:d3", "XRP/USDT", 0.5)
    _open_position(db, "paper", "paper:s1", "BTC/USDT", 60_000.0)  # not an LLM account: not asked
    standin.script("claude", default=Reply(text=_checkpoint_answer("EXIT")))
    standin.script("gpt", default=Reply(text=_checkpoint_answer("REDUCE", 0.5)))
    flip = json.loads(_checkpoint_answer("FLIP"))
    flip["flip"] = {"position_size_pct": 5, "leverage": 1, "entry": 0.5, "stop_loss": 0.505, "take_profit": 0.49,
                    "invalidation": "back above 0.505"}
    standin.script("grok", default=Reply(text=json.dumps(flip)))

    result = dg.materialize([position_checkpoints], resources=resources)
    meta = _metadata(result, "position_checkpoints")
    assert meta["positions"] == 3
    assert all(verdict in meta["verdicts"] for verdict in ("EXIT", "REDUCE", "FLIP"))
    _, published = DecisionStream(redis_client).after("0")
    by_step = {(d.account, d.decision_id.rsplit(":", 1)[-1]): d for d in published}
    assert sorted(by_step) == [("llm:claude", "close"), ("llm:grok", "close"), ("llm:grok", "flip")]
    close = by_step[("llm:claude", "close")]
    assert close.decision_id.endswith(":llm:claude:d1:close") and close.decision.action.value == "CLOSE"
    assert close.decision.symbol == "XRP/USDT"
    # The flip closes the long first, then opens the short: in that order on the stream.
    assert [d.decision.action.value for d in published if d.account == "llm:grok"] == ["CLOSE", "SHORT"]
    assert {DecisionEventStore(db).state(d.decision_id) for d in published} == {DecisionState.APPROVED}
    # REDUCE asked for nothing: the paper executor closes whole positions only.
    assert not any(d.account == "llm:gpt" for d in published)
