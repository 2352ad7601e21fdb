"""Risk rules: the product's promise. No model output bypasses them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.market import INSTRUMENTS, Asset, Side
from triplegain_core.paper_executor import PaperExecutor
from triplegain_core.portfolio import MissingPriceError, Portfolio
from triplegain_core.positions import Position
from triplegain_core.signals import Direction, TechnicalSignal

# Relative float tolerance on limits computed by multiplication (e.g. a stop placed at exactly 2%).
_REL_TOLERANCE = 1e-9


class RiskReason(StrEnum):
    """Machine-readable reason attached to every risk decision."""

    APPROVED = "approved"
    EXIT_ALWAYS_ALLOWED = "exit_always_allowed"
    STOP_TOO_FAR = "stop_too_far"
    STOP_MISSING = "stop_missing"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    DRAWDOWN_PAUSE = "drawdown_pause"
    POSITION_ALREADY_OPEN = "position_already_open"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    SIZE_BELOW_MINIMUM = "size_below_minimum"
    NO_PRICE = "no_price"


class RiskLimits(BaseModel):
    """Configurable limits; the defaults are those of ARCHITECTURE.md section 4."""

    model_config = ConfigDict(frozen=True)

    risk_per_trade: float = Field(default=0.01, gt=0.0, le=0.05)
    max_position_fraction: float = Field(default=0.20, gt=0.0, le=1.0)
    max_stop_distance: float = Field(default=0.02, gt=0.0, le=0.2)
    daily_loss_limit: float = Field(default=0.03, gt=0.0, le=1.0)
    max_drawdown: float = Field(default=0.10, gt=0.0, le=1.0)
    min_notional_usdt: float = Field(default=5.0, ge=0.0)


class RiskCheck(BaseModel):
    """The RiskAgent's verdict on one proposed order, kept for the audit trail."""

    model_config = ConfigDict(frozen=True)

    check_id: str
    account: str
    time: datetime
    symbol: str
    signal_id: str | None
    position_id: str | None
    approved: bool
    reasons: tuple[RiskReason, ...]
    quantity: float = Field(ge=0.0)
    notional_usdt: float = Field(ge=0.0)
    equity_usdt: float
    risk_usdt: float = Field(ge=0.0)


class RiskAgent:
    """Checks every proposed entry against the limits and sizes it; never blocks an exit.

    It remembers the peak equity (drawdown pause) and the equity at the first observation of
    each UTC day (daily loss limit), fed by :meth:`observe_equity` and by every validation.
    Spot only: a SHORT sells base inventory the account holds and buys it back on exit, so
    sizing keeps back what the open positions will need to close (see ``_available``).
    """

    def __init__(
        self, limits: RiskLimits = RiskLimits(), fee_rate: float = 0.001, slippage: float = 0.0005
    ) -> None:
        self.limits = limits
        self.fee_rate = fee_rate
        self.slippage = slippage
        # The paper executor's own pricing, so sizing uses exactly the fill price it will get.
        self._pricing = PaperExecutor(fee_rate=fee_rate, slippage=slippage)
        self._peak_equity: float | None = None
        self._day: date | None = None
        self._day_start_equity = 0.0

    def observe_equity(self, now: datetime, equity_usdt: float) -> None:
        """Record the account's equity at ``now`` (UTC-aware)."""
        day = _utc_day(now)
        if day != self._day:
            self._day = day
            self._day_start_equity = equity_usdt
        if self._peak_equity is None or equity_usdt > self._peak_equity:
            self._peak_equity = equity_usdt

    def drawdown(self, equity_usdt: float) -> float:
        """Fall of ``equity_usdt`` below the peak seen, as a fraction of the peak."""
        peak = max(self._peak_equity or equity_usdt, equity_usdt)
        return (peak - equity_usdt) / peak if peak > 0 else 0.0

    def daily_loss(self, now: datetime, equity_usdt: float) -> float:
        """Loss since the start of ``now``'s UTC day as a fraction of that start (gains < 0)."""
        if _utc_day(now) != self._day or self._day_start_equity <= 0:
            return 0.0
        return (self._day_start_equity - equity_usdt) / self._day_start_equity

    def pause_reasons(self, now: datetime, equity_usdt: float) -> tuple[RiskReason, ...]:
        """Why new entries are paused at this equity (empty when they are not)."""
        reasons = []
        if self.drawdown(equity_usdt) >= self.limits.max_drawdown:
            reasons.append(RiskReason.DRAWDOWN_PAUSE)
        if self.daily_loss(now, equity_usdt) >= self.limits.daily_loss_limit:
            reasons.append(RiskReason.DAILY_LOSS_LIMIT)
        return tuple(reasons)

    def paused(self, now: datetime, equity_usdt: float) -> bool:
        """Whether the drawdown pause or the daily loss limit blocks new entries."""
        return bool(self.pause_reasons(now, equity_usdt))

    def validate(
        self,
        signal: TechnicalSignal,
        portfolio: Portfolio,
        prices: Mapping[str, float],
        open_positions: Sequence[Position],
        now: datetime,
        check_id: str,
    ) -> RiskCheck:
        """Approve and size an entry on ``signal``, or reject it with every reason that applies.

        Size: ``risk_per_trade * equity`` lost at the stop, then capped so the notional at the
        worst fill price plus fee is at most ``max_position_fraction * equity``, then capped by
        what the balances can pay (keeping back what open positions need to exit). All values
        are in USDT; XRP/BTC goes through the BTC/USDT price.
        """
        limits = self.limits
        instrument = INSTRUMENTS[signal.symbol]
        reasons: list[RiskReason] = []
        stop_distance = abs(signal.entry - signal.stop_loss)
        if stop_distance > limits.max_stop_distance * signal.entry * (1 + _REL_TOLERANCE):
            reasons.append(RiskReason.STOP_TOO_FAR)
        if any(p.symbol == signal.symbol for p in open_positions):
            reasons.append(RiskReason.POSITION_ALREADY_OPEN)

        try:
            equity = portfolio.equity_usdt(prices)
            quote_usdt = portfolio.to_usdt(instrument.quote, 1.0, prices)
        except MissingPriceError:
            reasons.append(RiskReason.NO_PRICE)
            return self._check(signal, portfolio, now, check_id, reasons, 0.0, 0.0, 0.0, 0.0)

        self.observe_equity(now, equity)
        reasons.extend(self.pause_reasons(now, equity))

        side = Side.BUY if signal.direction is Direction.LONG else Side.SELL
        fill_price = self._pricing.worst_fill_price(side, signal.entry)
        risk_quantity = limits.risk_per_trade * equity / (stop_distance * quote_usdt)
        cap_quantity = limits.max_position_fraction * equity / (fill_price * quote_usdt * (1 + self.fee_rate))
        balance_quantity = self._balance_quantity(signal, fill_price, portfolio, open_positions)
        quantity = max(0.0, min(risk_quantity, cap_quantity, balance_quantity))
        notional_usdt = quantity * fill_price * quote_usdt
        if quantity <= 0.0 or notional_usdt < limits.min_notional_usdt:
            by_balance = balance_quantity < min(risk_quantity, cap_quantity)
            reasons.append(RiskReason.INSUFFICIENT_BALANCE if by_balance else RiskReason.SIZE_BELOW_MINIMUM)
        risk_usdt = quantity * stop_distance * quote_usdt
        return self._check(signal, portfolio, now, check_id, reasons, equity, quantity, notional_usdt, risk_usdt)

    def validate_exit(self, position: Position, now: datetime, check_id: str, equity_usdt: float) -> RiskCheck:
        """Approve closing ``position``: reducing risk is never blocked, but it is recorded."""
        return RiskCheck(
            check_id=check_id,
            account=position.account,
            time=now,
            symbol=position.symbol,
            signal_id=None,
            position_id=position.position_id,
            approved=True,
            reasons=(RiskReason.EXIT_ALWAYS_ALLOWED,),
            quantity=position.quantity,
            notional_usdt=max(0.0, position.entry_notional_usdt),
            equity_usdt=equity_usdt,
            risk_usdt=0.0,
        )

    def _balance_quantity(
        self,
        signal: TechnicalSignal,
        fill_price: float,
        portfolio: Portfolio,
        open_positions: Sequence[Position],
    ) -> float:
        """The largest quantity the balances can pay for now and buy back at the stop."""
        instrument = INSTRUMENTS[signal.symbol]
        available = self._available(portfolio, open_positions)
        quote = available[instrument.quote]
        if signal.direction is Direction.LONG:
            quantity = quote / (fill_price * (1 + self.fee_rate))
        else:
            # Selling yields fill_price*(1-fee) per unit; buying back at the stop costs
            # stop*(1+slippage)*(1+fee): the quote balance must cover the difference.
            buyback = self._pricing.worst_fill_price(Side.BUY, signal.stop_loss) * (1 + self.fee_rate)
            shortfall_per_unit = buyback - fill_price * (1 - self.fee_rate)
            quantity = min(available[instrument.base], quote / shortfall_per_unit)
        # A hair under the exact limit so float rounding in the fill cannot overdraw.
        return quantity * (1 - _REL_TOLERANCE)

    def _available(self, portfolio: Portfolio, open_positions: Sequence[Position]) -> dict[Asset, float]:
        """Balances minus what open positions need to close at their stops.

        A LONG must sell back the base it bought; a SHORT must buy back its base with quote.
        """
        available = portfolio.balances
        for position in open_positions:
            instrument = INSTRUMENTS[position.symbol]
            if position.direction is Direction.LONG:
                available[instrument.base] -= position.quantity
            else:
                buyback = self._pricing.worst_fill_price(Side.BUY, position.stop_loss) * (1 + self.fee_rate)
                available[instrument.quote] -= position.quantity * buyback
        return {asset: max(0.0, amount) for asset, amount in available.items()}

    @staticmethod
    def _check(
        signal: TechnicalSignal,
        portfolio: Portfolio,
        now: datetime,
        check_id: str,
        reasons: list[RiskReason],
        equity: float,
        quantity: float,
        notional_usdt: float,
        risk_usdt: float,
    ) -> RiskCheck:
        approved = not reasons
        return RiskCheck(
            check_id=check_id,
            account=portfolio.account,
            time=now,
            symbol=signal.symbol,
            signal_id=signal.signal_id,
            position_id=None,
            approved=approved,
            reasons=(RiskReason.APPROVED,) if approved else tuple(reasons),
            # A rejected check carries no size: nothing may be traded on it.
            quantity=quantity if approved else 0.0,
            notional_usdt=notional_usdt if approved else 0.0,
            equity_usdt=equity,
            risk_usdt=risk_usdt if approved else 0.0,
        )


def _utc_day(moment: datetime) -> date:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: TripleGain times are UTC-aware")
    return moment.astimezone(UTC).date()
