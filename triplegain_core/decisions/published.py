"""The decisions deliberation hands to the executor: published, as stored, and the strong
signals that ask the models early. What crosses the decision streams, without the streams."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.model.market import TRADED_SYMBOLS, US_PER_SECOND, us_to_datetime
from triplegain_core.model.signals import Direction, IntentAction, TradeIntent

# The design's floor: a model decision below this confidence is not traded.
MIN_DECISION_CONFIDENCE = 0.6
DEFAULT_DECISION_TTL_S = 15 * 60
LLM_ACCOUNT_PREFIX = "llm:"


def model_account(source: str) -> str:
    """The paper account that trades the decisions of ``source`` (a model, the consensus, a panel)."""
    return f"{LLM_ACCOUNT_PREFIX}{source}"


class DecisionRefusal(StrEnum):
    """Why the executor will not trade a published decision (before any risk check)."""

    EXPIRED = "expired"
    LOW_CONFIDENCE = "low_confidence"
    NOT_A_TRADE = "not_a_trade"  # HOLD: nothing to execute


class PublishedDecision(BaseModel):
    """One deliberated decision on its way to the executor.

    ``account`` is the paper account that trades it (each model and the consensus trade their
    own); ``market_time_us`` the moment of the market the deliberation saw; ``expires_us`` the
    market time after which it must not be executed.
    """

    model_config = ConfigDict(frozen=True)

    decision_id: str = Field(min_length=1)
    account: str = Field(min_length=1)
    source: str = Field(min_length=1)
    decision: TradingDecision
    market_time_us: int = Field(gt=0)
    expires_us: int = Field(gt=0)

    @model_validator(mode="after")
    def _expires_after_it_is_made(self) -> PublishedDecision:
        if self.expires_us <= self.market_time_us:
            raise ValueError(f"decision {self.decision_id} expires ({self.expires_us}) before it is made"
                             f" ({self.market_time_us})")
        return self

    @classmethod
    def make(cls, decision_id: str, account: str, source: str, decision: TradingDecision,
             market_time_us: int, ttl_s: float = DEFAULT_DECISION_TTL_S) -> PublishedDecision:
        """A decision deliberated at ``market_time_us`` that stays valid for ``ttl_s`` seconds."""
        return cls(decision_id=decision_id, account=account, source=source, decision=decision,
                   market_time_us=market_time_us,
                   expires_us=market_time_us + int(ttl_s * US_PER_SECOND))

    def refusal(self, now_us: int, min_confidence: float = MIN_DECISION_CONFIDENCE) -> DecisionRefusal | None:
        """Why this decision must not be executed at market time ``now_us``, or None."""
        if now_us >= self.expires_us:
            return DecisionRefusal.EXPIRED
        if self.decision.action is Action.HOLD:
            return DecisionRefusal.NOT_A_TRADE
        if self.decision.action is not Action.CLOSE and self.decision.confidence < min_confidence:
            return DecisionRefusal.LOW_CONFIDENCE
        return None

    def intent(self) -> TradeIntent:
        """The TradeIntent the RiskAgent validates for this decision (HOLD has none)."""
        decision = self.decision
        if decision.action is Action.HOLD:
            raise ValueError(f"decision {self.decision_id} is HOLD: there is nothing to trade")
        return TradeIntent(
            intent_id=self.decision_id,
            source="llm",
            strategy=f"llm:{self.source}",
            # Models have no track record the risk rules trust: never leveraged.
            tested=False,
            symbol=decision.symbol,
            time=us_to_datetime(self.market_time_us),
            action=IntentAction(decision.action.value.lower()),
            entry=decision.entry if decision.entry is not None else 0.0,
            stop_loss=decision.stop_loss,
            take_profit=decision.take_profit,
            size_fraction=decision.position_fraction,
            leverage=decision.leverage,
            confidence=decision.confidence,
        )


class DeliberatedDecision(BaseModel):
    """One decision of a round as stored: what it was, and whether it went to the executor."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    mode: str
    decision: PublishedDecision
    refusal: str | None = None

    @property
    def tradeable(self) -> bool:
        """Whether the decision may go to the executor (its lifecycle says whether it did)."""
        return self.refusal is None


class StrongSignal(BaseModel):
    """A technical signal strong enough to ask the models early."""

    model_config = ConfigDict(frozen=True)

    signal_id: str = Field(min_length=1)
    strategy: str = Field(min_length=1)
    symbol: str
    direction: Direction
    strength: float = Field(ge=0.0, le=1.0)
    ts_us: int = Field(gt=0)

    @model_validator(mode="after")
    def _traded_symbol(self) -> StrongSignal:
        if self.symbol not in TRADED_SYMBOLS:
            raise ValueError(f"unknown symbol {self.symbol!r}")
        return self
