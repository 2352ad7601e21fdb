"""Typed trading signals produced by the analysis agents."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
