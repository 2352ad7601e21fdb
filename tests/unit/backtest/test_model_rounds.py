"""Model accounts in a backtest: answers from recordings only, prompts from what was known then."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import numpy as np
import pytest

from tests.support.llm_standins.answers import decision_json
from triplegain_core.backtest.engine import AccountKind, model_rounds_of, run_backtest, settings_of
from triplegain_core.backtest.history import BacktestHistory, history_from_candles
from triplegain_core.backtest.models import MissingRecordingError, ModelRounds
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.llm.answer_cache import CachedAnswer, prompt_hash
from triplegain_core.llm.context import market_context
from triplegain_core.llm.models import LLMSettings, ModelConfig, Provider, TokenUsage
from triplegain_core.llm.prompts import build_prompt
from triplegain_core.model.market import US_PER_MINUTE, Candle, Side

HOUR_US = 60 * US_PER_MINUTE
T0 = 1_780_000_000 * 1_000_000 // HOUR_US * HOUR_US
ROUND_US = T0 + HOUR_US  # the one round of a 90-minute history on the hourly cadence
SYMBOL = "XRP/USDT"
# Nothing listens there: a backtest that tried to reach a provider would fail differently.
NOWHERE = "http://127.0.0.1:9"
MODELS = (ModelConfig(name="claude", provider=Provider.ANTHROPIC, model_id="claude-test", base_url=NOWHERE),
          ModelConfig(name="gpt", provider=Provider.OPENAI, model_id="gpt-test", base_url=NOWHERE))


def _settings() -> Settings:
    return Settings(symbols=(SYMBOL,), strategies=StrategySettings(enabled=(), technical_agent=False),
                    llm=LLMSettings(models=MODELS))


def _candles(minutes: int = 90, seed: int = 5, future_from_us: int | None = None) -> list[Candle]:
    """A random walk around 0.5; from ``future_from_us`` on, another walk (a different future)."""
    closes = 0.5 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.001, minutes)))
    other = closes * np.exp(np.cumsum(np.random.default_rng(seed + 1).normal(0, 0.003, minutes)))
    candles = []
    for i in range(minutes):
        open_us = T0 + i * US_PER_MINUTE
        c = float(other[i] if future_from_us is not None and open_us >= future_from_us else closes[i])
        candles.append(Candle(SYMBOL, "1m", open_us, c, c * 1.0005, c * 0.9995, c, 1000.0, 5))
    return candles


class RecordedAnswers:
    """An answer cache in memory that notes every hash asked; a backtest must never record."""

    def __init__(self, answers: dict[str, CachedAnswer]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def get_answer(self, digest: str) -> CachedAnswer | None:
        self.asked.append(digest)
        return self.answers.get(digest)

    async def put_answer(self, answer: CachedAnswer) -> None:
        raise AssertionError("a backtest recorded an answer")

    def rounds(self) -> ModelRounds:
        @asynccontextmanager
        async def opened() -> AsyncIterator[RecordedAnswers]:
            yield self
        return ModelRounds(answers=opened, every_minutes=60)


def _record_first_round(settings: Settings, candles: Sequence[Candle], answer: str) -> RecordedAnswers:
    """What a paper run asked at ROUND_US, before any model had an account: the context from the
    candles closed by then, the same answer from every model."""
    known = [c for c in candles if c.close_time_us <= ROUND_US]
    prompt = build_prompt(market_context(SYMBOL, known, [], {}, None), settings.deliberation.style,
                          settings.llm.prompt_token_budget)
    recorded = {}
    for model in settings.llm.models:
        digest = prompt_hash(model, prompt.system, prompt.user)
        recorded[digest] = CachedAnswer(prompt_hash=digest, provider=model.provider.value, model_id=model.model_id,
                                        system_prompt=prompt.system, user_prompt=prompt.user, raw_answer=answer,
                                        usage=TokenUsage(input_tokens=900, output_tokens=80),
                                        recorded_at=datetime(2026, 6, 1, tzinfo=UTC))
    return RecordedAnswers(recorded)


def _long_above_market(candles: Sequence[Candle]) -> str:
    market = next(c.close for c in candles if c.close_time_us == ROUND_US)
    return decision_json(SYMBOL, "LONG", 0.8, entry=round(market * 1.01, 6))  # willing to pay up to 1% more


def test_recorded_answers_trade_each_model_account_at_the_market_price() -> None:
    settings, candles = _settings(), _candles()
    answers = _record_first_round(settings, candles, _long_above_market(candles))
    history = history_from_candles(candles)
    result = run_backtest(settings, history, models=answers.rounds())

    assert len(answers.asked) == 2 and set(answers.asked) == set(answers.answers)
    assert [c.raw_answer for c in result.model_calls] == [_long_above_market(candles)] * 2
    kinds = {a.name: a.kind for a in result.accounts}
    assert {name for name, kind in kinds.items() if kind is AccountKind.MODEL} == {
        "llm:claude", "llm:gpt", "llm:consensus"}
    market = next(c.close for c in candles if c.close_time_us == ROUND_US)
    stated = json.loads(_long_above_market(candles))["entry"]
    for name in ("llm:claude", "llm:gpt", "llm:consensus"):
        entry = result.account(name).trail.fills[0]
        assert entry.side is Side.BUY and entry.time == datetime.fromtimestamp(ROUND_US / 1e6, UTC)
        # Filled at the market through the slippage, not at the price the model stated.
        assert entry.price == pytest.approx(market * (1 + settings.slippage)) and entry.price < stated
    again = run_backtest(settings, history, models=_record_first_round(settings, candles, _long_above_market(
        candles)).rounds())
    assert again.trades_hash == result.trades_hash


def test_a_missing_recording_stops_the_backtest_naming_the_model_and_the_prompt_hash() -> None:
    settings, candles = _settings(), _candles()
    with pytest.raises(MissingRecordingError) as missing:
        run_backtest(settings, history_from_candles(candles), models=RecordedAnswers({}).rounds())
    message = str(missing.value)
    assert re.search(r"no recorded answer of model (claude|gpt) for prompt [0-9a-f]{64} \(XRP/USDT at ", message)
    assert "never asks a provider" in message
    assert missing.value.model in ("claude", "gpt") and missing.value.prompt_hash in message


def test_the_prompts_hold_only_what_was_known_at_the_round() -> None:
    settings = _settings()
    known = _candles()
    # Another future after the round: every later candle differs, the round's prompts do not.
    changed = _candles(future_from_us=ROUND_US)
    assert [c.close for c in changed if c.close_time_us > ROUND_US] != [
        c.close for c in known if c.close_time_us > ROUND_US]
    answer = _long_above_market(known)
    first = run_backtest(settings, history_from_candles(known), models=_record_first_round(settings, known,
                                                                                             answer).rounds())
    other_future = _record_first_round(settings, known, answer)
    second = run_backtest(settings, history_from_candles(changed), models=other_future.rounds())
    assert [c.prompt_hash for c in second.model_calls] == [c.prompt_hash for c in first.model_calls]
    assert set(other_future.asked) == set(other_future.answers)


def test_a_run_with_models_keeps_them_and_their_cadence_in_its_configuration() -> None:
    settings, candles = _settings(), _candles()
    answers = _record_first_round(settings, candles, _long_above_market(candles))
    history: BacktestHistory = history_from_candles(candles)
    with_models = run_backtest(settings, history, models=answers.rounds())
    without = run_backtest(settings, history)
    assert model_rounds_of(with_models.config) == 60 and model_rounds_of(without.config) is None
    assert with_models.config_hash != without.config_hash
    assert settings_of(with_models.config).llm == settings.llm
    assert not [a for a in without.accounts if a.kind is AccountKind.MODEL]
