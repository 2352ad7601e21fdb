"""The vocabulary of decisions: signals (what a decider concluded) and trade intents (what the
RiskAgent is asked to trade)."""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


class Direction(StrEnum):
    """Which way a signal or position points."""

    LONG = "long"
    SHORT = "short"


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
    ``tested`` says whether the strategy has a track record: untested strategies never get
    leverage. ``invalidation`` is a price on
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


class SignalAction(StrEnum):
    """Open or flip toward LONG / SHORT, or CLOSE what the strategy opened."""

    LONG = "long"
    SHORT = "short"
    CLOSE = "close"


class Signal(BaseModel):
    """A decider's conclusion on one symbol at one moment: a strategy's, or the TechnicalAgent's.

    LONG and SHORT carry a mandatory stop-loss and take-profit on the right sides of the entry
    (and an optional invalidation level on the stop's side: the price at which the thesis is
    wrong even before the stop is hit). CLOSE carries neither. ``indicators`` holds the values
    the rule used, all finite, so the decision can be audited and replayed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    signal_id: str
    strategy: str
    strategy_version: str
    symbol: str
    timeframe: str
    time: datetime
    action: SignalAction
    strength: float = Field(ge=0.0, le=1.0)
    entry: float = Field(gt=0.0)
    stop_loss: float | None = Field(default=None, gt=0.0)
    take_profit: float | None = Field(default=None, gt=0.0)
    invalidation: float | None = Field(default=None, gt=0.0)
    reason: str = Field(min_length=1)
    indicators: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent_levels(self) -> Signal:
        bad = [name for name, value in self.indicators.items() if not math.isfinite(value)]
        if bad:
            raise ValueError(f"indicator values must be finite: {bad}")
        if self.action is SignalAction.CLOSE:
            if self.stop_loss is not None or self.take_profit is not None:
                raise ValueError("a CLOSE signal carries no stop-loss or take-profit")
            return self
        if self.stop_loss is None or self.take_profit is None:
            raise ValueError(f"a {self.action} signal needs a stop-loss and a take-profit")
        if self.action is SignalAction.LONG:
            ok = self.stop_loss < self.entry < self.take_profit
            inv_ok = self.invalidation is None or self.invalidation < self.entry
        else:
            ok = self.take_profit < self.entry < self.stop_loss
            inv_ok = self.invalidation is None or self.invalidation > self.entry
        if not ok:
            raise ValueError(
                f"{self.action} signal needs stop/entry/take-profit in order, got "
                f"stop={self.stop_loss} entry={self.entry} tp={self.take_profit}"
            )
        if not inv_ok:
            raise ValueError(f"invalidation {self.invalidation} is not on the stop side of entry {self.entry}")
        return self

    @property
    def direction(self) -> Direction | None:
        """The position direction it asks for; None for CLOSE."""
        if self.action is SignalAction.CLOSE:
            return None
        return Direction(self.action.value)

    @property
    def stop_distance(self) -> float | None:
        """|entry - stop| as a fraction of entry; None for CLOSE."""
        if self.stop_loss is None:
            return None
        return abs(self.entry - self.stop_loss) / self.entry

    def to_trade_intent(
        self, *, source: str = "strategy", tested: bool = False, leverage: float | None = None,
        max_holding_s: float | None = None,
    ) -> TradeIntent:
        """The trade intent the RiskAgent validates: entries and CLOSEs alike, invalidation kept;
        its id and signal id are the signal's.

        ``source`` names the kind of decider (``strategy``, ``technical`` for the TechnicalAgent);
        ``tested`` says whether it has a track record (untested ones never get leverage); the
        strength becomes the intent's confidence.
        """
        return TradeIntent(
            intent_id=self.signal_id,
            source=source,
            strategy=self.strategy,
            tested=tested,
            symbol=self.symbol,
            time=self.time,
            action=IntentAction(self.action.value),
            entry=self.entry,
            stop_loss=self.stop_loss,
            take_profit=self.take_profit,
            leverage=leverage,
            confidence=self.strength,
            invalidation=self.invalidation,
            max_holding_s=max_holding_s,
            signal_id=self.signal_id,
        )
