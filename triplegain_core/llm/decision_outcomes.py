"""What the market did after each model decision: the raw material of model scoring.

A LONG or SHORT decision is followed candle by candle from the first candle that opens at or
after the decision: its stop or its take-profit ends it (when one candle reaches both, the stop
is assumed first: the pessimistic reading, since the order inside a candle is unknown), else the
close at the horizon does. A HOLD is right when the price moved less than ``hold_band`` over
the horizon. CLOSE decisions manage a position and are not scored here. A decision with too
little market after it to reach its horizon is left unscored (``None``), never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from functools import partial

from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.model.market import Candle, datetime_to_us


class ExitKind(StrEnum):
    """How a scored decision ended."""

    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"
    HORIZON = "horizon"


class ScoringRules(BaseModel):
    """How far ahead decisions are judged, and what counts as a quiet market for a HOLD."""

    model_config = ConfigDict(frozen=True)

    horizon_minutes: int = Field(default=60, ge=1)
    hold_band: float = Field(default=0.005, gt=0.0, lt=1.0)


class DecisionOutcome(BaseModel):
    """One decision against the market that followed it.

    ``return_pct`` is the move in the decision's favour, in percent of the entry (a HOLD's is 0);
    ``correct`` is the yes/no the confidence is calibrated against.
    """

    model_config = ConfigDict(frozen=True)

    model_name: str
    symbol: str
    time: datetime
    action: Action
    confidence: float
    exit_kind: ExitKind
    return_pct: float
    correct: bool


def score_decision(
    model_name: str, decided_at: datetime, decision: TradingDecision, candles_after: Sequence[Candle],
    rules: ScoringRules = ScoringRules(),
) -> DecisionOutcome | None:
    """The outcome of ``decision`` given the 1m candles of its symbol after ``decided_at``.

    ``candles_after`` are oldest first; those opening before the decision are ignored. Returns
    None for CLOSE and when the candles do not reach the horizon.
    """
    if decision.action is Action.CLOSE:
        return None
    start_us = datetime_to_us(decided_at)
    horizon_us = start_us + rules.horizon_minutes * 60_000_000
    window = [c for c in candles_after if c.open_time_us >= start_us and c.open_time_us < horizon_us]
    if not window or window[-1].close_time_us < horizon_us:
        return None
    outcome = partial(DecisionOutcome, model_name=model_name, symbol=decision.symbol, time=decided_at,
                      action=decision.action, confidence=decision.confidence)
    if decision.action is Action.HOLD:
        first_open = window[0].open
        moved = abs(window[-1].close - first_open) / first_open
        return outcome(exit_kind=ExitKind.HORIZON, return_pct=0.0, correct=moved < rules.hold_band)
    exit_kind, exit_price = _first_exit(decision, window)
    assert decision.entry is not None  # LONG/SHORT always carry their levels
    sign = 1.0 if decision.action is Action.LONG else -1.0
    return_pct = sign * (exit_price - decision.entry) / decision.entry * 100.0
    return outcome(exit_kind=exit_kind, return_pct=return_pct, correct=return_pct > 0.0)


def _first_exit(decision: TradingDecision, window: Sequence[Candle]) -> tuple[ExitKind, float]:
    assert decision.stop_loss is not None and decision.take_profit is not None
    long = decision.action is Action.LONG
    for candle in window:
        stopped = candle.low <= decision.stop_loss if long else candle.high >= decision.stop_loss
        if stopped:
            return ExitKind.STOP_LOSS, decision.stop_loss
        reached = candle.high >= decision.take_profit if long else candle.low <= decision.take_profit
        if reached:
            return ExitKind.TAKE_PROFIT, decision.take_profit
    return ExitKind.HORIZON, window[-1].close
