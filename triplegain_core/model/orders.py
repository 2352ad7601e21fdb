"""Orders and fills: what the executor sends and what comes back."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from triplegain_core.model.market import Asset, Side


class OrderPurpose(StrEnum):
    """Why an order exists; exits name the rule that fired."""

    ENTRY = "entry"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING_STOP = "trailing_stop"
    MAX_HOLDING = "max_holding"
    INVALIDATION = "invalidation"
    SIGNAL_CLOSE = "signal_close"
    # Closed by a person: ``triplegain close`` or ``triplegain halt --flatten``.
    MANUAL_CLOSE = "manual_close"


class OrderType(StrEnum):
    """MARKET fills at once; LIMIT fills at ``limit_price`` or better; STOP becomes a market
    order once the price reaches ``stop_price``."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class TimeInForce(StrEnum):
    """GTC rests until filled or cancelled; IOC fills what it can now and cancels the rest."""

    GTC = "gtc"
    IOC = "ioc"


class OrderState(StrEnum):
    """Life cycle of an order. FILLED, CANCELLED and REJECTED are final."""

    NEW = "new"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


FINAL_STATES = frozenset({OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED})


class Order(BaseModel):
    """An order. ``order_id`` is the client order id, so resubmission is idempotent.

    ``leverage`` > 1 on an entry borrows (quote for a long, base for a short; see
    ``Portfolio``); ``repay_loan`` on an exit is the loan the position carries, repaid out
    of the fill. A LIMIT order with IOC is a market order with price protection.
    """

    model_config = ConfigDict(frozen=True)

    order_id: str
    account: str
    time: datetime
    symbol: str
    side: Side
    quantity: float = Field(gt=0.0)
    purpose: OrderPurpose
    check_id: str
    position_id: str
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.GTC
    limit_price: float | None = Field(default=None, gt=0.0)
    stop_price: float | None = Field(default=None, gt=0.0)
    leverage: float = Field(default=1.0, ge=1.0)
    repay_loan: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _prices_match_type(self) -> Order:
        if self.order_type is OrderType.LIMIT and self.limit_price is None:
            raise ValueError(f"limit order {self.order_id} needs a limit_price")
        if self.order_type is OrderType.STOP and self.stop_price is None:
            raise ValueError(f"stop order {self.order_id} needs a stop_price")
        return self


class OrderEvent(BaseModel):
    """One state change of one order, in the order they happened (``seq`` from 0)."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    seq: int = Field(ge=0)
    time: datetime
    state: OrderState
    filled_quantity: float = Field(ge=0.0)
    detail: str = ""


class Fill(BaseModel):
    """An execution of an order. ``fee`` is charged in ``fee_asset`` (the quote asset).

    ``loan_change`` moves the account's loan in ``loan_asset``: positive borrows (a leveraged
    entry), negative repays (its exit).
    """

    model_config = ConfigDict(frozen=True)

    fill_id: str
    order_id: str
    account: str
    time: datetime
    symbol: str
    side: Side
    quantity: float = Field(gt=0.0)
    price: float = Field(gt=0.0)
    fee: float = Field(ge=0.0)
    fee_asset: Asset
    loan_change: float = 0.0
    loan_asset: Asset | None = None

    @property
    def notional(self) -> float:
        """Quantity times price, in the quote asset, before fees."""
        return self.quantity * self.price
