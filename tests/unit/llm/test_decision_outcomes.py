"""Scoring decisions against the candles that followed them, and models over their decisions,
with the figures worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from triplegain_core.llm.decision_outcomes import DecisionOutcome, ExitKind, ScoringRules, score_decision
from triplegain_core.llm.model_performance import CallSummary, scorecards
from triplegain_core.llm.models import CallOutcome
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.model.market import US_PER_MINUTE, Candle, datetime_to_us

DECIDED = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
T0 = datetime_to_us(DECIDED)
RULES = ScoringRules(horizon_minutes=5, hold_band=0.01)


def _decision(action: Action, confidence: float = 0.8) -> TradingDecision:
    levels = {
        Action.LONG: (100.0, 98.0, 104.0),
        Action.SHORT: (100.0, 102.0, 96.0),
    }.get(action, (None, None, None))
    entry, stop, take = levels
    return TradingDecision(action=action, symbol="BTC/USDT", confidence=confidence,
                           position_size_pct=5.0, leverage=1.0, entry=entry, stop_loss=stop,
                           take_profit=take, invalidation="x", reasoning="y", model="gpt")


def _candles(*bars: tuple[float, float, float, float], start_minute: int = 0) -> list[Candle]:
    return [Candle("BTC/USDT", "1m", T0 + (start_minute + i) * US_PER_MINUTE, o, h, lo, c, 1.0, 1)
            for i, (o, h, lo, c) in enumerate(bars)]


FLAT = (100.0, 100.5, 99.5, 100.0)


def test_a_long_reaching_its_take_profit_earns_the_distance_to_it() -> None:
    candles = _candles(FLAT, (100.0, 104.5, 99.8, 104.0), FLAT, FLAT, FLAT)
    outcome = score_decision("gpt", DECIDED, _decision(Action.LONG), candles, RULES)
    assert outcome is not None
    assert outcome.exit_kind is ExitKind.TAKE_PROFIT
    assert outcome.return_pct == pytest.approx(4.0)
    assert outcome.correct


def test_a_candle_through_both_levels_counts_as_the_stop() -> None:
    candles = _candles((100.0, 105.0, 97.0, 101.0), FLAT, FLAT, FLAT, FLAT)
    outcome = score_decision("gpt", DECIDED, _decision(Action.LONG), candles, RULES)
    assert outcome is not None and outcome.exit_kind is ExitKind.STOP_LOSS
    assert outcome.return_pct == pytest.approx(-2.0) and not outcome.correct


def test_a_short_that_neither_stops_nor_takes_is_judged_at_the_horizon_close() -> None:
    candles = _candles(FLAT, FLAT, FLAT, FLAT, (100.0, 100.2, 98.9, 99.0), (99.0, 99.0, 90.0, 90.0))
    outcome = score_decision("gpt", DECIDED, _decision(Action.SHORT), candles, RULES)
    # The sixth candle is past the 5-minute horizon: it does not count.
    assert outcome is not None and outcome.exit_kind is ExitKind.HORIZON
    assert outcome.return_pct == pytest.approx(1.0) and outcome.correct


def test_hold_is_right_in_a_quiet_market_and_wrong_in_a_move() -> None:
    quiet = _candles(FLAT, FLAT, FLAT, FLAT, (100.0, 100.6, 99.9, 100.5))
    moving = _candles(FLAT, FLAT, FLAT, FLAT, (100.0, 103.0, 100.0, 102.0))
    right = score_decision("gpt", DECIDED, _decision(Action.HOLD), quiet, RULES)
    wrong = score_decision("gpt", DECIDED, _decision(Action.HOLD), moving, RULES)
    assert right is not None and right.correct and right.return_pct == 0.0
    assert wrong is not None and not wrong.correct


def test_too_little_market_or_a_close_is_not_scored() -> None:
    assert score_decision("gpt", DECIDED, _decision(Action.LONG), _candles(FLAT, FLAT), RULES) is None
    assert score_decision("gpt", DECIDED, _decision(Action.CLOSE), _candles(*[FLAT] * 5), RULES) is None


def test_candles_before_the_decision_are_ignored() -> None:
    # A candle reaching the stop one minute before the decision must not stop it.
    before = _candles((100.0, 100.0, 90.0, 95.0), start_minute=-1)
    after = _candles(FLAT, FLAT, FLAT, FLAT, (100.0, 101.0, 99.9, 101.0))
    outcome = score_decision("gpt", DECIDED, _decision(Action.LONG), before + after, RULES)
    assert outcome is not None and outcome.exit_kind is ExitKind.HORIZON
    assert outcome.return_pct == pytest.approx(1.0)


def test_model_performance_adds_up_calls_and_outcomes_by_hand() -> None:
    calls = [CallSummary(model_name="gpt", time=DECIDED, outcome=kind, latency_ms=ms, cost_usd=0.01)
             for kind, ms in ((CallOutcome.DECIDED, 100.0), (CallOutcome.DECIDED, 300.0),
                              (CallOutcome.REJECTED, 200.0), (CallOutcome.FAILED, 400.0))]
    outcomes = [
        DecisionOutcome(model_name="gpt", symbol="BTC/USDT", time=DECIDED, action=Action.LONG,
                        confidence=0.9, exit_kind=ExitKind.TAKE_PROFIT, return_pct=4.0, correct=True),
        DecisionOutcome(model_name="gpt", symbol="BTC/USDT", time=DECIDED, action=Action.SHORT,
                        confidence=0.6, exit_kind=ExitKind.STOP_LOSS, return_pct=-2.0, correct=False),
    ]
    (card,) = scorecards(calls, outcomes)
    assert (card.calls, card.decided, card.rejected, card.failed, card.scored) == (4, 2, 1, 1, 2)
    assert card.hit_rate == 0.5 and card.mean_return_pct == pytest.approx(1.0)
    # Brier: ((0.9 - 1)^2 + (0.6 - 0)^2) / 2 = (0.01 + 0.36) / 2
    assert card.brier == pytest.approx(0.185)
    assert card.cost_usd == pytest.approx(0.04) and card.mean_latency_ms == pytest.approx(250.0)
    assert card.answer_rate == 0.5
    assert scorecards([], []) == []
