"""Typed trading signals produced by the analysis agents."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


class Direction(StrEnum):
    """Which way a signal or position points."""

    LONG = "long"
    SHORT = "short"


class TechnicalSignal(BaseModel):
    """What the TechnicalAgent concluded on one closed candle.

    Entry, stop and take-profit sit on the right sides of each other for the direction;
    a signal that does not is rejected at construction, never traded.
    """

    model_config = ConfigDict(frozen=True)

    signal_id: str
    strategy: str
    symbol: str
    timeframe: str
    time: datetime
    direction: Direction
    strength: float = Field(ge=0.0, le=1.0)
    entry: float = Field(gt=0.0)
    stop_loss: float = Field(gt=0.0)
    take_profit: float = Field(gt=0.0)
    indicators: dict[str, float]

    @model_validator(mode="after")
    def _levels_on_the_right_sides(self) -> TechnicalSignal:
        if self.direction is Direction.LONG:
            ok = self.stop_loss < self.entry < self.take_profit
        else:
            ok = self.take_profit < self.entry < self.stop_loss
        if not ok:
            raise ValueError(
                f"{self.direction} signal needs stop/entry/take-profit in order, got "
                f"stop={self.stop_loss} entry={self.entry} tp={self.take_profit}"
            )
        return self


class IntentAction(StrEnum):
    """What a trade intent asks for: open LONG / SHORT, or CLOSE the open position."""

    LONG = "long"
    SHORT = "short"
    CLOSE = "close"


class TradeIntent(BaseModel):
    """A proposed trade from any source, as the RiskAgent receives it.

    Deliberately lenient: every number may be NaN, infinite, negative or on the wrong side,
    because validating it is the RiskAgent's job (each defect becomes a machine-readable
    rejection reason, never an exception in the loop). Only its time must be UTC-aware.
    ``size_fraction`` is the notional the source asks for as a fraction of equity (None: size
    by risk alone); ``leverage`` None takes the account's default for the direction.
    ``tested`` says whether the strategy has
    a track record: untested strategies never get leverage. ``invalidation`` is a price on
    the stop's side of entry that closes the position when crossed; ``max_holding_s`` closes
    it after that many seconds.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=True)

    intent_id: str
    source: str = "strategy"
    strategy: str
    tested: bool = False
    symbol: str
    time: AwareDatetime
    action: IntentAction
    entry: float
    stop_loss: float | None = None
    take_profit: float | None = None
    size_fraction: float | None = None
    leverage: float | None = None
    confidence: float = 1.0
    invalidation: float | None = None
    max_holding_s: float | None = None
    signal_id: str | None = None

    @property
    def direction(self) -> Direction | None:
        """The position direction an opening intent asks for; None for CLOSE."""
        if self.action is IntentAction.CLOSE:
            return None
        return Direction(self.action.value)

    @classmethod
    def from_signal(
        cls, signal: TechnicalSignal, *, tested: bool = False, leverage: float | None = None,
        max_holding_s: float | None = None,
    ) -> TradeIntent:
        """The intent a TechnicalSignal stands for (its id becomes the intent's and signal's id)."""
        return cls(
            intent_id=signal.signal_id,
            source="technical",
            strategy=signal.strategy,
            tested=tested,
            symbol=signal.symbol,
            time=signal.time,
            action=IntentAction(signal.direction.value),
            entry=signal.entry,
            stop_loss=signal.stop_loss,
            take_profit=signal.take_profit,
            leverage=leverage,
            confidence=signal.strength,
            max_holding_s=max_holding_s,
            signal_id=signal.signal_id,
        )
