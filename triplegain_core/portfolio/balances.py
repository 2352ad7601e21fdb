"""Balances in BTC, USDT and XRP, the loans of leveraged positions, and their value.

Margin model (deliberately simple, like spot margin on Kraken): a leveraged LONG borrows
the part of its cost its leverage does not pay (``notional * (1 - 1/leverage)`` of the quote
asset) and buys the base; a leveraged SHORT borrows the base it sells. The loan is a
liability in the same asset, repaid out of the exit fill. Equity is balances minus
liabilities, valued in USDT. No interest is charged and there is no liquidation engine:
the RiskAgent keeps every position closable at its stop (stop <= 2%, leverage <= 3x).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from triplegain_core.model.market import INSTRUMENTS, Asset, Side
from triplegain_core.model.orders import Fill

DEFAULT_STARTING_BALANCES: dict[Asset, float] = {Asset.USDT: 1000.0, Asset.XRP: 500.0, Asset.BTC: 0.0}

# Iterating the enum class is slow; equity is valued at every moment of a backtest.
_ASSETS = tuple(Asset)

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


@dataclass(frozen=True, slots=True)
class PortfolioSnapshot:
    """Holdings of one account at one moment, valued in USDT.

    Made for every account at every minute of a backtest: a plain record, built from typed
    values (a stored row is converted by :meth:`from_stored`). Its dicts are read, never
    changed: snapshots share them (the accounts valued at one moment share the prices, the
    snapshots of an account its holdings until a fill changes them)."""

    account: str
    time: datetime
    balances: dict[Asset, float]
    prices: dict[str, float]
    equity_usdt: float
    liabilities: dict[Asset, float] = field(default_factory=dict)

    @classmethod
    def from_stored(cls, account: str, time: datetime, balances: Mapping[str | Asset, Any],
                    prices: Mapping[str, Any] | None, equity_usdt: Any,
                    liabilities: Mapping[str | Asset, Any] | None = None) -> PortfolioSnapshot:
        """A snapshot from stored values (asset names as text, numbers as decimals or floats)."""
        return cls(account=account, time=time,
                   balances={Asset(asset): float(amount) for asset, amount in balances.items()},
                   prices={symbol: float(price) for symbol, price in (prices or {}).items()},
                   equity_usdt=float(equity_usdt),
                   liabilities={Asset(asset): float(amount) for asset, amount in (liabilities or {}).items()})


class PortfolioState(BaseModel):
    """What a :class:`Portfolio` holds, for a checkpoint: every balance and loan."""

    model_config = ConfigDict(frozen=True)

    balances: dict[Asset, float]
    liabilities: dict[Asset, float]


class Portfolio:
    """The balances and loans of one account, changed only by fills."""

    def __init__(self, account: str, balances: Mapping[Asset, float]) -> None:
        if any(amount < 0 for amount in balances.values()):
            raise ValueError(f"starting balances must be >= 0, got {dict(balances)}")
        self.account = account
        self._balances: dict[Asset, float] = dict.fromkeys(Asset, 0.0)
        self._balances.update({Asset(asset): float(amount) for asset, amount in balances.items()})
        self._liabilities: dict[Asset, float] = dict.fromkeys(Asset, 0.0)
        # The holdings as snapshots show them, copied once per change (None: changed since).
        self._shown: tuple[dict[Asset, float], dict[Asset, float]] | None = None
        # What each asset adds to the equity, in Asset order: its USDT pair (None for USDT) and
        # its balance less its loan (None: changed since).
        self._terms: tuple[tuple[str | None, float], ...] | None = None
        self.changes = 0
        """How many times the holdings changed (fills, a restore): what a valuation compares."""

    @property
    def balances(self) -> dict[Asset, float]:
        """A copy of every asset's balance."""
        return dict(self._balances)

    def balance(self, asset: Asset) -> float:
        """The balance of one asset."""
        return self._balances[asset]

    @property
    def liabilities(self) -> dict[Asset, float]:
        """A copy of what the account owes in each asset (its loans)."""
        return dict(self._liabilities)

    def export_state(self) -> PortfolioState:
        """The balances and loans as they are now (see :meth:`import_state`)."""
        return PortfolioState(balances=self.balances, liabilities=self.liabilities)

    def import_state(self, state: PortfolioState) -> None:
        """Take the balances and loans of a checkpoint in place of the current ones."""
        self._balances = dict.fromkeys(Asset, 0.0) | {Asset(a): float(v) for a, v in state.balances.items()}
        self._liabilities = dict.fromkeys(Asset, 0.0) | {Asset(a): float(v) for a, v in state.liabilities.items()}
        self._shown = self._terms = None
        self.changes += 1

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
        """Total value of all balances minus all loans, in USDT (summed in ``Asset`` order)."""
        # to_usdt inlined, the net amounts kept between changes: this runs for every account at
        # every moment of a backtest.
        terms = self._terms
        if terms is None:
            balances, loans = self._balances, self._liabilities
            terms = self._terms = tuple((USDT_PAIRS.get(asset), balances[asset] - loans[asset]) for asset in _ASSETS)
        total = 0.0
        for pair, amount in terms:
            if pair is not None and amount != 0.0:
                price = prices.get(pair)
                if price is None:
                    raise MissingPriceError(f"no {pair} price to value {amount} {pair.split('/')[0]}")
                amount *= price
            total += amount
        return total

    def apply_fill(self, fill: Fill) -> None:
        """Move base, quote, fee and loan for one fill, all or nothing.

        A borrowing fill (``loan_change > 0``) credits the loan before trading; a repaying
        one debits it after, so an exit's proceeds can repay its own loan.
        """
        if fill.account != self.account:
            raise ValueError(f"fill {fill.fill_id} is for account {fill.account}, not {self.account}")
        instrument = INSTRUMENTS[fill.symbol]
        if fill.fee_asset is not instrument.quote:
            raise ValueError(f"fill {fill.fill_id} charges its fee in {fill.fee_asset}, not {instrument.quote}")
        if fill.loan_change and fill.loan_asset not in (instrument.base, instrument.quote):
            raise ValueError(f"fill {fill.fill_id} moves a loan in {fill.loan_asset}, not in {fill.symbol}")
        sign = 1.0 if fill.side is Side.BUY else -1.0
        new = {instrument.base: self._balances[instrument.base], instrument.quote: self._balances[instrument.quote]}
        loans = dict(self._liabilities)
        if fill.loan_asset is not None:
            new[fill.loan_asset] += fill.loan_change
            loans[fill.loan_asset] += fill.loan_change
        new[instrument.base] += sign * fill.quantity
        new[instrument.quote] -= sign * fill.notional + fill.fee
        scale = max(1.0, fill.quantity, fill.notional + fill.fee, abs(fill.loan_change))
        floor = -BALANCE_TOLERANCE * scale
        if any(amount < floor for amount in new.values()) or any(amount < floor for amount in loans.values()):
            raise InsufficientBalanceError(
                f"fill {fill.fill_id} ({fill.side} {fill.quantity} {fill.symbol} @ {fill.price},"
                f" loan {fill.loan_change} {fill.loan_asset}) would leave {new}, loans {loans}"
            )
        # Clamp the tolerated residue so balances never read as negative.
        for asset, amount in new.items():
            self._balances[asset] = max(amount, 0.0)
        self._liabilities = {asset: max(amount, 0.0) for asset, amount in loans.items()}
        self._shown = self._terms = None
        self.changes += 1

    def snapshot(self, time: datetime, prices: dict[str, float], equity_usdt: float | None = None) -> PortfolioSnapshot:
        """The holdings and their USDT value at ``time`` (``equity_usdt``: their value at
        ``prices`` when already known); the snapshot keeps ``prices`` itself (the accounts
        valued at one moment share one copy of the market's)."""
        if self._shown is None:
            owed = {asset: amount for asset, amount in self._liabilities.items() if amount}
            self._shown = (dict(self._balances), owed)
        balances, liabilities = self._shown
        # Positional: made for every account at every minute of a backtest.
        return PortfolioSnapshot(self.account, time, balances, prices,
                                 self.equity_usdt(prices) if equity_usdt is None else equity_usdt, liabilities)
