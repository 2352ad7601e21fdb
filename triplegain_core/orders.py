"""Orders and fills: what the executor sends and what comes back."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.market import Asset, Side


class OrderPurpose(StrEnum):
    """Why an order exists; exits name the rule that fired."""

    ENTRY = "entry"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"


class Order(BaseModel):
    """A market order. ``order_id`` is the client order id, so resubmission is idempotent."""

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


class Fill(BaseModel):
    """An execution of an order. ``fee`` is charged in ``fee_asset`` (the quote asset)."""

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

    @property
    def notional(self) -> float:
        """Quantity times price, in the quote asset, before fees."""
        return self.quantity * self.price
