"""Balances in BTC, USDT and XRP and their value."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from triplegain_core.market import INSTRUMENTS, Asset, Side
from triplegain_core.orders import Fill

DEFAULT_STARTING_BALANCES: dict[Asset, float] = {Asset.USDT: 1000.0, Asset.XRP: 500.0, Asset.BTC: 0.0}

# The pair that values each non-USDT asset in USDT.
USDT_PAIRS: dict[Asset, str] = {Asset.BTC: "BTC/USDT", Asset.XRP: "XRP/USDT"}

# Float residue allowed below zero before a balance counts as overdrawn, relative to the amount
# the fill moves (at least 1): buying then selling the same quantity on top of other holdings
# can leave a few ulps of the balance below zero, never more.
BALANCE_TOLERANCE = 1e-12


class MissingPriceError(KeyError):
    """A price needed to value a holding in USDT is not known yet."""


class InsufficientBalanceError(ValueError):
    """A fill would take a balance below zero; the portfolio was left unchanged."""


class PortfolioSnapshot(BaseModel):
    """Holdings of one account at one moment, valued in USDT."""

    model_config = ConfigDict(frozen=True)

    account: str
    time: datetime
    balances: dict[Asset, float]
    prices: dict[str, float]
    equity_usdt: float


class Portfolio:
    """The spot balances of one account, changed only by fills."""

    def __init__(self, account: str, balances: Mapping[Asset, float]) -> None:
        if any(amount < 0 for amount in balances.values()):
            raise ValueError(f"starting balances must be >= 0, got {dict(balances)}")
        self.account = account
        self._balances: dict[Asset, float] = {asset: 0.0 for asset in Asset}
        self._balances.update({Asset(asset): float(amount) for asset, amount in balances.items()})

    @property
    def balances(self) -> dict[Asset, float]:
        """A copy of every asset's balance."""
        return dict(self._balances)

    def balance(self, asset: Asset) -> float:
        """The balance of one asset."""
        return self._balances[asset]

    def to_usdt(self, asset: Asset, amount: float, prices: Mapping[str, float]) -> float:
        """``amount`` of ``asset`` valued in USDT at ``prices`` (keyed by symbol).

        Raises MissingPriceError when the USDT pair of a non-zero amount is not priced.
        """
        if asset is Asset.USDT or amount == 0.0:
            return amount
        pair = USDT_PAIRS[asset]
        price = prices.get(pair)
        if price is None:
            raise MissingPriceError(f"no {pair} price to value {amount} {asset}")
        return amount * price

    def equity_usdt(self, prices: Mapping[str, float]) -> float:
        """Total value of all balances in USDT."""
        return sum(self.to_usdt(asset, amount, prices) for asset, amount in self._balances.items())

    def apply_fill(self, fill: Fill) -> None:
        """Move base and quote (and the quote-asset fee) for one fill, all or nothing."""
        if fill.account != self.account:
            raise ValueError(f"fill {fill.fill_id} is for account {fill.account}, not {self.account}")
        instrument = INSTRUMENTS[fill.symbol]
        if fill.fee_asset is not instrument.quote:
            raise ValueError(f"fill {fill.fill_id} charges its fee in {fill.fee_asset}, not {instrument.quote}")
        sign = 1.0 if fill.side is Side.BUY else -1.0
        new_base = self._balances[instrument.base] + sign * fill.quantity
        new_quote = self._balances[instrument.quote] - sign * fill.notional - fill.fee
        base_floor = -BALANCE_TOLERANCE * max(1.0, fill.quantity)
        quote_floor = -BALANCE_TOLERANCE * max(1.0, fill.notional + fill.fee)
        if new_base < base_floor or new_quote < quote_floor:
            raise InsufficientBalanceError(
                f"fill {fill.fill_id} ({fill.side} {fill.quantity} {fill.symbol} @ {fill.price}) "
                f"would leave {instrument.base}={new_base}, {instrument.quote}={new_quote}"
            )
        # Clamp the tolerated residue so balances never read as negative.
        self._balances[instrument.base] = max(new_base, 0.0)
        self._balances[instrument.quote] = max(new_quote, 0.0)

    def snapshot(self, time: datetime, prices: Mapping[str, float]) -> PortfolioSnapshot:
        """The holdings and their USDT value at ``time``."""
        return PortfolioSnapshot(
            account=self.account,
            time=time,
            balances=self.balances,
            prices=dict(prices),
            equity_usdt=self.equity_usdt(prices),
        )
