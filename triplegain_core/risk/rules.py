"""Risk rules: the product's promise. No model output bypasses them.

The RiskAgent validates a :class:`~triplegain_core.model.signals.TradeIntent` (a
:class:`~triplegain_core.model.signals.Signal` is converted to one) against the limits of
ARCHITECTURE.md section 4, sizes it, sets its leverage, and returns a :class:`RiskCheck` that
names every reason of a rejection and every adjustment of an approval. Where the market
context needed by a rule is unknown (no volatility or correlation estimate yet), the rule
assumes the unfavourable case: no leverage, correlated, BTC-correlated. A missing estimate never loosens a limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.marketdata.fill_model import FillModel
from triplegain_core.model.market import INSTRUMENTS, Asset, Side
from triplegain_core.model.signals import Direction, IntentAction, Signal, TradeIntent
from triplegain_core.portfolio.balances import MissingPriceError, Portfolio
from triplegain_core.portfolio.positions import Position

# Relative float tolerance on limits computed by multiplication (e.g. a stop placed at exactly 2%).
_REL_TOLERANCE = 1e-9

BTC_SYMBOL = "BTC/USDT"


class RiskReason(StrEnum):
    """Machine-readable reason attached to every risk decision."""

    APPROVED = "approved"
    EXIT_ALWAYS_ALLOWED = "exit_always_allowed"
    UNKNOWN_SYMBOL = "unknown_symbol"
    INVALID_ENTRY = "invalid_entry"
    ENTRY_AWAY_FROM_MARKET = "entry_away_from_market"
    STOP_MISSING = "stop_missing"
    STOP_WRONG_SIDE = "stop_wrong_side"
    STOP_TOO_FAR = "stop_too_far"
    TAKE_PROFIT_INVALID = "take_profit_invalid"
    INVALIDATION_INVALID = "invalidation_invalid"
    MAX_HOLDING_INVALID = "max_holding_invalid"
    SIZE_INVALID = "size_invalid"
    LEVERAGE_INVALID = "leverage_invalid"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    DRAWDOWN_PAUSE = "drawdown_pause"
    LOSS_COOLDOWN = "loss_cooldown"
    POSITION_ALREADY_OPEN = "position_already_open"
    TOO_MANY_CORRELATED = "too_many_correlated"
    NOTHING_TO_CLOSE = "nothing_to_close"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    SIZE_BELOW_MINIMUM = "size_below_minimum"
    NO_PRICE = "no_price"
    INVALID_MARKET = "invalid_market"
    # Entry blocks (see triplegain_core.risk.entry_blocks): every entry refused, exits go on.
    TRADING_HALTED = "trading_halted"
    STALE_MARKET = "stale_market"
    VOLATILITY_HALT = "volatility_halt"
    REDUCE_ONLY = "reduce_only"
    MARKET_SEEN_LATE = "market_seen_late"


class RiskAdjustment(StrEnum):
    """What the RiskAgent changed in an approved intent, machine-readable."""

    SIZE_CAPPED_BY_RISK = "size_capped_by_risk"
    SIZE_CAPPED_BY_POSITION_LIMIT = "size_capped_by_position_limit"
    SIZE_REDUCED_BTC_CORRELATION = "size_reduced_btc_correlation"
    SIZE_CAPPED_BY_BALANCE = "size_capped_by_balance"
    LEVERAGE_CAPPED = "leverage_capped"
    LEVERAGE_REDUCED_VOLATILITY = "leverage_reduced_volatility"
    LEVERAGE_REMOVED_UNTESTED = "leverage_removed_untested"


class RiskLimits(BaseModel):
    """Configurable limits; the defaults are those of ARCHITECTURE.md section 4.

    Leverage: an entry of a tested strategy that does not ask for a leverage gets
    ``long_leverage`` / ``short_leverage``; any leverage is capped at ``max_leverage``, and
    above ``high_volatility`` (daily volatility of the symbol, a fraction) the cap shrinks
    in proportion, ``max_leverage * high_volatility / volatility``, down to 1. Untested
    strategies trade at 1. Correlation: at most ``max_correlated_positions`` open positions
    whose |correlation| with each other is >= ``correlation_threshold``; an entry whose
    correlation with BTC/USDT exceeds ``btc_correlation_threshold`` is sized down by
    ``btc_correlation_size_factor``. ``max_holding_minutes`` closes entries that name no
    holding limit of their own after that long (None: no default limit). An entry more
    than ``max_entry_deviation`` from the symbol's market price is refused: sizes and
    stops computed from a price the market is not at mean nothing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    risk_per_trade: float = Field(default=0.01, gt=0.0, le=0.05)
    max_position_fraction: float = Field(default=0.20, gt=0.0, le=1.0)
    max_stop_distance: float = Field(default=0.02, gt=0.0, le=0.2)
    daily_loss_limit: float = Field(default=0.03, gt=0.0, le=1.0)
    max_drawdown: float = Field(default=0.10, gt=0.0, le=1.0)
    min_notional_usdt: float = Field(default=5.0, ge=0.0)
    trailing_activation_r: float = Field(default=1.5, gt=0.0)
    trailing_distance_r: float = Field(default=1.0, gt=0.0)
    consecutive_losses: int = Field(default=5, ge=1)
    cooldown_minutes: float = Field(default=30.0, ge=0.0)
    max_leverage: float = Field(default=3.0, ge=1.0, le=10.0)
    long_leverage: float = Field(default=1.5, ge=1.0, le=10.0)
    short_leverage: float = Field(default=2.0, ge=1.0, le=10.0)
    high_volatility: float = Field(default=0.05, gt=0.0)
    max_correlated_positions: int = Field(default=2, ge=1)
    correlation_threshold: float = Field(default=0.7, gt=0.0, le=1.0)
    btc_correlation_threshold: float = Field(default=0.8, gt=-1.0, le=1.0)
    btc_correlation_size_factor: float = Field(default=0.5, gt=0.0, le=1.0)
    max_holding_minutes: float | None = Field(default=None, gt=0.0)
    max_entry_deviation: float = Field(default=0.05, gt=0.0, le=1.0)


@dataclass(frozen=True, slots=True)
class MarketRisk:
    """Market context of the risk rules: daily volatility per symbol and pairwise correlation.

    Missing entries are unknown, and the rules treat unknown as the unfavourable case.
    """

    volatility: Mapping[str, float] = field(default_factory=dict)
    correlations: Mapping[frozenset[str], float] = field(default_factory=dict)

    def volatility_of(self, symbol: str) -> float | None:
        """The symbol's daily volatility, or None when unknown (or not a finite number)."""
        value = self.volatility.get(symbol)
        return value if value is not None and math.isfinite(value) and value >= 0 else None

    def correlation(self, a: str, b: str) -> float | None:
        """Correlation of the two symbols' returns (1 for a symbol with itself), or None."""
        if a == b:
            return 1.0
        value = self.correlations.get(frozenset((a, b)))
        return value if value is not None and math.isfinite(value) else None


# Fewer returns than this give no volatility or correlation estimate.
MIN_RETURNS = 30


class MarketRiskEstimate:
    """Volatility and correlation from close series, one per symbol: (times, closes) arrays,
    oldest first; each value worked out when first asked (an intent rejected before the rules
    need the market, or one that needs a single correlation, costs no more than that).

    A series' returns are the log returns of its closes when every close is positive and
    finite and there are more than ``min_returns`` closes (:func:`series_returns`); a caller
    that has them already (the market, for a batch of candles) may hand them in as ``returns``.

    Volatility is the standard deviation of log returns scaled to a day (``periods_per_day``
    returns per day, 1440 for 1m candles). Correlations use the returns over the times the
    two series share. Series with fewer than ``min_returns`` returns give no estimate. Read as
    :class:`MarketRisk` is: unknown values are None.
    """

    def __init__(self, closes: Mapping[str, tuple[np.ndarray, np.ndarray]], periods_per_day: float = 1440.0,
                 min_returns: int = MIN_RETURNS,
                 returns: Mapping[str, tuple[np.ndarray, np.ndarray] | None] | None = None) -> None:
        self._closes = closes
        self._periods_per_day = periods_per_day
        self._min_returns = min_returns
        self._returns: dict[str, tuple[np.ndarray, np.ndarray] | None] = dict(returns or {})
        # Per symbol, its returns less their mean and the sum of their squares: a symbol's
        # correlations with the others over the same times share them.
        self._centred: dict[str, tuple[np.ndarray, float]] = {}
        self._volatility: dict[str, float | None] = {}
        self._correlations: dict[frozenset[str], float | None] = {}

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols with a close series."""
        return tuple(self._closes)

    def _returns_of(self, symbol: str) -> tuple[np.ndarray, np.ndarray] | None:
        if symbol in self._returns:
            return self._returns[symbol]
        series = self._closes.get(symbol)
        found = None if series is None else series_returns(*series, self._min_returns)
        self._returns[symbol] = found
        return found

    def estimated_volatility(self, symbol: str) -> float | None:
        """The daily volatility of ``symbol`` as estimated (None: too short or invalid a series)."""
        if symbol not in self._volatility:
            returns = self._returns_of(symbol)
            self._volatility[symbol] = None if returns is None else float(
                np.sqrt(((returns[1] - returns[1].mean()) ** 2).sum() / (len(returns[1]) - 1))
                * math.sqrt(self._periods_per_day))
        return self._volatility[symbol]

    def estimated_correlation(self, a: str, b: str) -> float | None:
        """The correlation of two different symbols' returns as estimated (None: unknown)."""
        key = frozenset((a, b))
        if key not in self._correlations:
            self._correlations[key] = self._estimate_correlation(*sorted(key))
        return self._correlations[key]

    def _estimate_correlation(self, a: str, b: str) -> float | None:
        first, second = self._returns_of(a), self._returns_of(b)
        if first is None or second is None:
            return None
        (times_a, returns_a), (times_b, returns_b) = first, second
        if np.array_equal(times_a, times_b):
            # The usual case, every pair traded every minute: each series centred once.
            if len(returns_a) < self._min_returns:
                return None
            (x, sx), (y, sy) = self._centred_of(a, returns_a), self._centred_of(b, returns_b)
            return _centred_correlation(x, sx, y, sy)
        else:
            _, at_a, at_b = np.intersect1d(times_a, times_b, assume_unique=True, return_indices=True)
            x, y = returns_a[at_a], returns_b[at_b]
        if len(x) < self._min_returns:
            return None
        return _correlation(x, y)

    def _centred_of(self, symbol: str, returns: np.ndarray) -> tuple[np.ndarray, float]:
        centred = self._centred.get(symbol)
        if centred is None:
            centred = self._centred[symbol] = _centred(returns)
        return centred

    def volatility_of(self, symbol: str) -> float | None:
        """As :meth:`MarketRisk.volatility_of`."""
        value = self.estimated_volatility(symbol)
        return value if value is not None and math.isfinite(value) and value >= 0 else None

    def correlation(self, a: str, b: str) -> float | None:
        """As :meth:`MarketRisk.correlation`."""
        if a == b:
            return 1.0
        value = self.estimated_correlation(a, b)
        return value if value is not None and math.isfinite(value) else None


def series_returns(times: np.ndarray, closes: np.ndarray,
                   min_returns: int = MIN_RETURNS) -> tuple[np.ndarray, np.ndarray] | None:
    """The log returns of ``closes`` with the times they end at, or None when there are not
    more than ``min_returns`` closes or one is not positive and finite."""
    # A NaN fails the first test, an infinity one of the two.
    if len(closes) > min_returns and closes.min() > 0 and closes.max() < math.inf:
        return times[1:], np.diff(np.log(closes))
    return None


def estimate_market_risk(
    closes: Mapping[str, tuple[np.ndarray, np.ndarray]],
    periods_per_day: float = 1440.0,
    min_returns: int = MIN_RETURNS,
) -> MarketRisk:
    """Every volatility and correlation of :class:`MarketRiskEstimate`, worked out at once."""
    estimate = MarketRiskEstimate(closes, periods_per_day, min_returns)
    symbols = sorted(estimate.symbols)
    volatility = {symbol: value for symbol in estimate.symbols
                  if (value := estimate.estimated_volatility(symbol)) is not None}
    correlations = {frozenset((a, b)): value for i, a in enumerate(symbols) for b in symbols[i + 1:]
                    if (value := estimate.estimated_correlation(a, b)) is not None}
    return MarketRisk(volatility, correlations)


def _correlation(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson's correlation of ``x`` and ``y``; None when either never varies."""
    return _centred_correlation(*_centred(x), *_centred(y))


def _centred(values: np.ndarray) -> tuple[np.ndarray, float]:
    """``values`` less their mean, and the sum of their squares."""
    # The sum over the count is the mean, bit for bit, without np.mean's overhead.
    centred = values - values.sum() / len(values)
    return centred, float(centred @ centred)


def _centred_correlation(x: np.ndarray, sx: float, y: np.ndarray, sy: float) -> float | None:
    """Pearson's correlation of centred ``x`` and ``y`` with their sums of squares ``sx``, ``sy``."""
    if sx == 0 or sy == 0:
        return None
    return max(-1.0, min(1.0, float(x @ y) / math.sqrt(sx * sy)))


class RiskCheck(BaseModel):
    """The RiskAgent's verdict on one proposed order, kept for the audit trail.

    A rejected check carries no size. ``limit_price`` is the entry order's limit: the worst
    fill price the size was computed at (the market's price through the slippage), tightened to
    the entry the intent stated (through the same slippage) when that is the better price, so
    the fill can never cost more than either.
    """

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
    adjustments: tuple[RiskAdjustment, ...] = ()
    leverage: float = Field(default=1.0, ge=1.0)
    intent_id: str | None = None
    strategy: str | None = None
    direction: Direction | None = None
    entry: float | None = None
    stop_loss: float | None = None
    limit_price: float | None = None


@dataclass(slots=True)
class _Verdict:
    """The values a check is built from, filled in as validation proceeds."""

    reasons: list[RiskReason] = field(default_factory=list)
    adjustments: list[RiskAdjustment] = field(default_factory=list)
    equity: float = 0.0
    quantity: float = 0.0
    notional_usdt: float = 0.0
    risk_usdt: float = 0.0
    leverage: float = 1.0
    limit_price: float | None = None


class RiskState(BaseModel):
    """What a :class:`RiskAgent` remembers between validations, for a checkpoint: the peak
    equity (drawdown pause), the UTC day and the equity it started at (daily loss limit), the
    run of losses and the cooldown it started. A pause is not stored: it follows from these."""

    model_config = ConfigDict(frozen=True)

    peak_equity: float | None = None
    day: date | None = None
    day_start_equity: float = 0.0
    loss_streak: int = 0
    cooldown_until: datetime | None = None


class RiskAgent:
    """Checks every proposed entry against the limits and sizes it; never blocks an exit.

    It remembers the peak equity (drawdown pause), the equity at the first observation of
    each UTC day (daily loss limit), fed by :meth:`observe_equity` and by every validation,
    and the run of consecutive losing trades (cooldown), fed by :meth:`record_trade_result`.
    """

    def __init__(
        self, limits: RiskLimits = RiskLimits(), fee_rate: float = 0.001, slippage: float = 0.0005
    ) -> None:
        self.limits = limits
        self.fee_rate = fee_rate
        self.slippage = slippage
        # The paper executor's fill model, so sizing uses exactly the fill price it will get.
        self._fills = FillModel(fee_rate=fee_rate, slippage=slippage)
        self._peak_equity: float | None = None
        self._day: date | None = None
        self._day_start_equity = 0.0
        self._loss_streak = 0
        self._cooldown_until: datetime | None = None

    def export_state(self) -> RiskState:
        """The remembered risk state (see :meth:`import_state`)."""
        return RiskState(peak_equity=self._peak_equity, day=self._day, day_start_equity=self._day_start_equity,
                         loss_streak=self._loss_streak, cooldown_until=self._cooldown_until)

    def import_state(self, state: RiskState) -> None:
        """Remember what a checkpoint remembered, in place of the current state."""
        self._peak_equity, self._day = state.peak_equity, state.day
        self._day_start_equity, self._loss_streak = state.day_start_equity, state.loss_streak
        self._cooldown_until = state.cooldown_until

    def observe_equity(self, now: datetime, equity_usdt: float) -> None:
        """Record the account's equity at ``now`` (UTC-aware); non-finite values are ignored."""
        day = _utc_day(now)
        if not math.isfinite(equity_usdt):
            return
        if day != self._day:
            self._day = day
            self._day_start_equity = equity_usdt
        if self._peak_equity is None or equity_usdt > self._peak_equity:
            self._peak_equity = equity_usdt

    def record_trade_result(self, closed_at: datetime, realized_pnl: float) -> None:
        """Count a closed trade: ``consecutive_losses`` losses in a row start the cooldown."""
        if realized_pnl < 0:
            self._loss_streak += 1
            if self._loss_streak >= self.limits.consecutive_losses:
                self._cooldown_until = closed_at + timedelta(minutes=self.limits.cooldown_minutes)
                self._loss_streak = 0
        else:
            self._loss_streak = 0

    def cooldown_until(self) -> datetime | None:
        """When the latest loss cooldown ends (it may be in the past)."""
        return self._cooldown_until

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
        """The pre-check: why new entries are paused at this equity (empty when they are not)."""
        reasons = []
        if self.drawdown(equity_usdt) >= self.limits.max_drawdown:
            reasons.append(RiskReason.DRAWDOWN_PAUSE)
        if self.daily_loss(now, equity_usdt) >= self.limits.daily_loss_limit:
            reasons.append(RiskReason.DAILY_LOSS_LIMIT)
        if self._cooldown_until is not None and now < self._cooldown_until:
            reasons.append(RiskReason.LOSS_COOLDOWN)
        return tuple(reasons)

    def paused(self, now: datetime, equity_usdt: float) -> bool:
        """Whether the drawdown pause, the daily loss limit or the cooldown blocks new entries."""
        return bool(self.pause_reasons(now, equity_usdt))

    def max_leverage_for(self, symbol: str, tested: bool, market: MarketRisk | MarketRiskEstimate) -> float:
        """The highest leverage an entry on ``symbol`` may get now (1 when untested or unknown)."""
        if not tested:
            return 1.0
        volatility = market.volatility_of(symbol)
        if volatility is None:
            return 1.0
        cap = self.limits.max_leverage
        if volatility > self.limits.high_volatility:
            cap = max(1.0, cap * self.limits.high_volatility / volatility)
        return cap

    def validate(
        self,
        intent: TradeIntent | Signal,
        portfolio: Portfolio,
        prices: Mapping[str, float],
        open_positions: Sequence[Position],
        now: datetime,
        check_id: str,
        market: MarketRisk | MarketRiskEstimate | None = None,
        blocked: Sequence[RiskReason] = (),
    ) -> RiskCheck:
        """Approve and size ``intent``, or reject it with every reason that applies.

        ``blocked`` are the entry blocks in force (see :mod:`~triplegain_core.risk.entry_blocks`):
        any of them rejects an entry; a CLOSE is never blocked.

        Size: ``risk_per_trade * equity`` lost at the stop, or the intent's ``size_fraction``
        of equity when smaller; capped so the notional at the worst fill price plus fee is at
        most ``max_position_fraction * equity``; reduced when BTC-correlated; capped by what
        the balances (and the leverage's loan) can pay, keeping back what open positions need
        to exit. All values are in USDT; XRP/BTC goes through the BTC/USDT price. An entry is
        sized at the symbol's market price, where its order fills; the entry the intent states
        is only the order's limit (see :attr:`RiskCheck.limit_price`). A CLOSE intent is
        approved when there is a position to close.
        """
        if isinstance(intent, Signal):
            intent = intent.to_trade_intent(source="technical")
        market = market or MarketRisk()
        verdict = _Verdict()
        observed = _safe_equity(portfolio, prices)
        if observed > 0:
            self.observe_equity(now, observed)
        if intent.action is IntentAction.CLOSE:
            held = next((p for p in open_positions if p.symbol == intent.symbol), None)
            if held is None:
                verdict.reasons.append(RiskReason.NOTHING_TO_CLOSE)
                return self._check(intent, portfolio, now, check_id, verdict)
            check = self.validate_exit(held, now, check_id, _safe_equity(portfolio, prices))
            return check.model_copy(update={"intent_id": intent.intent_id, "strategy": intent.strategy})
        if intent.symbol not in INSTRUMENTS:
            verdict.reasons.append(RiskReason.UNKNOWN_SYMBOL)
            return self._check(intent, portfolio, now, check_id, verdict)

        verdict.reasons.extend(blocked)
        verdict.reasons.extend(self._level_reasons(intent))
        self._position_reasons(intent, open_positions, market, verdict)

        instrument = INSTRUMENTS[intent.symbol]
        try:
            equity = portfolio.equity_usdt(prices)
            quote_usdt = portfolio.to_usdt(instrument.quote, 1.0, prices)
        except MissingPriceError:
            verdict.reasons.append(RiskReason.NO_PRICE)
            return self._check(intent, portfolio, now, check_id, verdict)
        if not (math.isfinite(equity) and equity > 0 and math.isfinite(quote_usdt) and quote_usdt > 0):
            verdict.reasons.append(RiskReason.INVALID_MARKET)
            return self._check(intent, portfolio, now, check_id, verdict)
        verdict.equity = equity
        market_price = prices.get(intent.symbol)
        if math.isfinite(intent.entry) and intent.entry > 0 and not (
            market_price is not None and math.isfinite(market_price) and market_price > 0
            and abs(intent.entry - market_price) <= self.limits.max_entry_deviation * market_price
        ):
            verdict.reasons.append(RiskReason.ENTRY_AWAY_FROM_MARKET)
        elif market_price is not None and intent.stop_loss is not None and (
            (intent.stop_loss >= market_price) if intent.direction is Direction.LONG
            else (intent.stop_loss <= market_price)
        ):
            # The order fills at the market, not at the stated entry: a stop already crossed
            # by the market would close the position the moment it opened.
            verdict.reasons.append(RiskReason.STOP_WRONG_SIDE)
        verdict.reasons.extend(self.pause_reasons(now, equity))
        if market_price is None or any(reason in _UNSIZEABLE for reason in verdict.reasons):
            return self._check(intent, portfolio, now, check_id, verdict)

        self._set_leverage(intent, market, verdict)
        self._size(intent, market_price, portfolio, open_positions, market, equity, quote_usdt, verdict)
        return self._check(intent, portfolio, now, check_id, verdict)

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
            leverage=position.leverage,
            strategy=position.strategy,
            direction=position.direction,
        )

    def _level_reasons(self, intent: TradeIntent) -> list[RiskReason]:
        """Defects of the intent's own numbers: entry, stop, take-profit, invalidation, size."""
        reasons = []
        entry, stop, take_profit = intent.entry, intent.stop_loss, intent.take_profit
        long = intent.direction is Direction.LONG
        entry_ok = math.isfinite(entry) and entry > 0
        if not entry_ok:
            reasons.append(RiskReason.INVALID_ENTRY)
        if stop is None or not math.isfinite(stop) or stop <= 0:
            reasons.append(RiskReason.STOP_MISSING)
        elif entry_ok:
            if (stop >= entry) if long else (stop <= entry):
                reasons.append(RiskReason.STOP_WRONG_SIDE)
            elif abs(entry - stop) > self.limits.max_stop_distance * entry * (1 + _REL_TOLERANCE):
                reasons.append(RiskReason.STOP_TOO_FAR)
        if take_profit is None or not math.isfinite(take_profit) or take_profit <= 0 or (
            entry_ok and ((take_profit <= entry) if long else (take_profit >= entry))
        ):
            reasons.append(RiskReason.TAKE_PROFIT_INVALID)
        invalidation = intent.invalidation
        if invalidation is not None and (
            not math.isfinite(invalidation) or invalidation <= 0
            or (entry_ok and ((invalidation >= entry) if long else (invalidation <= entry)))
        ):
            reasons.append(RiskReason.INVALIDATION_INVALID)
        holding = intent.max_holding_s
        if holding is not None and not (math.isfinite(holding) and holding > 0):
            reasons.append(RiskReason.MAX_HOLDING_INVALID)
        size = intent.size_fraction
        if size is not None and not (math.isfinite(size) and size > 0):
            reasons.append(RiskReason.SIZE_INVALID)
        leverage = intent.leverage
        if leverage is not None and not (math.isfinite(leverage) and leverage >= 1.0):
            reasons.append(RiskReason.LEVERAGE_INVALID)
        return reasons

    def _position_reasons(
        self, intent: TradeIntent, open_positions: Sequence[Position], market: MarketRisk | MarketRiskEstimate,
        verdict: _Verdict,
    ) -> None:
        if any(p.symbol == intent.symbol for p in open_positions):
            verdict.reasons.append(RiskReason.POSITION_ALREADY_OPEN)
        correlated = sum(self._correlated(intent.symbol, p.symbol, market) for p in open_positions)
        if correlated >= self.limits.max_correlated_positions:
            verdict.reasons.append(RiskReason.TOO_MANY_CORRELATED)

    def _correlated(self, a: str, b: str, market: MarketRisk | MarketRiskEstimate) -> bool:
        correlation = market.correlation(a, b)
        return correlation is None or abs(correlation) >= self.limits.correlation_threshold

    def _set_leverage(self, intent: TradeIntent, market: MarketRisk | MarketRiskEstimate, verdict: _Verdict) -> None:
        limits = self.limits
        default = limits.long_leverage if intent.direction is Direction.LONG else limits.short_leverage
        requested = intent.leverage if intent.leverage is not None else default
        if not intent.tested:
            if intent.leverage is not None and intent.leverage > 1.0:
                verdict.adjustments.append(RiskAdjustment.LEVERAGE_REMOVED_UNTESTED)
            verdict.leverage = 1.0
            return
        leverage = requested
        if leverage > limits.max_leverage:
            leverage = limits.max_leverage
            verdict.adjustments.append(RiskAdjustment.LEVERAGE_CAPPED)
        cap = self.max_leverage_for(intent.symbol, intent.tested, market)
        if leverage > cap:
            leverage = cap
            verdict.adjustments.append(RiskAdjustment.LEVERAGE_REDUCED_VOLATILITY)
        verdict.leverage = leverage

    def _size(
        self,
        intent: TradeIntent,
        market_price: float,
        portfolio: Portfolio,
        open_positions: Sequence[Position],
        market: MarketRisk | MarketRiskEstimate,
        equity: float,
        quote_usdt: float,
        verdict: _Verdict,
    ) -> None:
        limits = self.limits
        assert intent.stop_loss is not None and intent.direction is not None  # checked by _level_reasons
        side = Side.BUY if intent.direction is Direction.LONG else Side.SELL
        # Sized at the price the order fills at: the market's, never the entry the intent states.
        fill_price = self._fills.worst_fill_price(side, market_price)
        stop_distance = abs(market_price - intent.stop_loss)
        risk_quantity = limits.risk_per_trade * equity / (stop_distance * quote_usdt)
        cap_quantity = limits.max_position_fraction * equity / (fill_price * quote_usdt * (1 + self.fee_rate))
        if intent.size_fraction is not None:
            wanted = intent.size_fraction * equity / (fill_price * quote_usdt)
            if wanted > min(risk_quantity, cap_quantity):
                verdict.adjustments.append(
                    RiskAdjustment.SIZE_CAPPED_BY_RISK if risk_quantity <= cap_quantity
                    else RiskAdjustment.SIZE_CAPPED_BY_POSITION_LIMIT
                )
        else:
            wanted = risk_quantity
            if cap_quantity < risk_quantity:
                verdict.adjustments.append(RiskAdjustment.SIZE_CAPPED_BY_POSITION_LIMIT)
        quantity = min(wanted, risk_quantity, cap_quantity)
        if intent.symbol != BTC_SYMBOL:
            btc = market.correlation(intent.symbol, BTC_SYMBOL)
            if btc is None or btc > limits.btc_correlation_threshold:
                quantity *= limits.btc_correlation_size_factor
                verdict.adjustments.append(RiskAdjustment.SIZE_REDUCED_BTC_CORRELATION)
        balance_quantity = self._balance_quantity(intent, verdict.leverage, fill_price, portfolio, open_positions)
        if balance_quantity < quantity:
            quantity = balance_quantity
            verdict.adjustments.append(RiskAdjustment.SIZE_CAPPED_BY_BALANCE)
        quantity = max(0.0, quantity)
        notional_usdt = quantity * fill_price * quote_usdt
        if quantity <= 0.0 or notional_usdt < limits.min_notional_usdt:
            by_balance = RiskAdjustment.SIZE_CAPPED_BY_BALANCE in verdict.adjustments
            verdict.reasons.append(RiskReason.INSUFFICIENT_BALANCE if by_balance else RiskReason.SIZE_BELOW_MINIMUM)
        verdict.quantity = quantity
        verdict.notional_usdt = notional_usdt
        verdict.risk_usdt = quantity * stop_distance * quote_usdt
        # The stated entry is a limit at most: a LONG stated below the market (a SHORT above it)
        # fills only if the market comes to it, with the usual slippage around it allowed.
        if side is Side.BUY:
            verdict.limit_price = min(fill_price, self._fills.worst_fill_price(side, intent.entry))
        else:
            verdict.limit_price = max(fill_price, self._fills.worst_fill_price(side, intent.entry))

    def _balance_quantity(
        self,
        intent: TradeIntent,
        leverage: float,
        fill_price: float,
        portfolio: Portfolio,
        open_positions: Sequence[Position],
    ) -> float:
        """The largest quantity the balances can pay for now and close at the stop."""
        assert intent.stop_loss is not None
        instrument = INSTRUMENTS[intent.symbol]
        available = self._available(portfolio, open_positions)
        quote = available[instrument.quote]
        if intent.direction is Direction.LONG:
            # Own money pays 1/leverage of the notional plus the fee; the rest is borrowed.
            quantity = quote / (fill_price * (1.0 / leverage + self.fee_rate))
        else:
            # Selling yields fill_price*(1-fee) per unit; buying back at the stop costs
            # stop*(1+slippage)*(1+fee): the quote balance must cover the difference.
            buyback = self._fills.worst_fill_price(Side.BUY, intent.stop_loss) * (1 + self.fee_rate)
            shortfall_per_unit = buyback - fill_price * (1 - self.fee_rate)
            if leverage > 1.0:
                # The base is borrowed; own quote must also hold the margin, notional / leverage.
                quantity = quote / max(shortfall_per_unit, fill_price / leverage)
            else:
                quantity = min(available[instrument.base], quote / shortfall_per_unit)
        # A hair under the exact limit so float rounding in the fill cannot overdraw.
        return quantity * (1 - _REL_TOLERANCE)

    def _available(self, portfolio: Portfolio, open_positions: Sequence[Position]) -> dict[Asset, float]:
        """Balances minus what open positions need to close at their stops.

        A LONG must sell back the base it bought (and repay its quote loan from the sale,
        topping up from the quote balance if the sale at the stop falls short); a SHORT must
        buy back its base with quote.
        """
        available = portfolio.balances
        for position in open_positions:
            instrument = INSTRUMENTS[position.symbol]
            if position.direction is Direction.LONG:
                available[instrument.base] -= position.quantity
                proceeds = (
                    position.quantity * self._fills.worst_fill_price(Side.SELL, position.stop_loss)
                    * (1 - self.fee_rate)
                )
                available[instrument.quote] -= max(0.0, position.loan - proceeds)
            else:
                buyback = self._fills.worst_fill_price(Side.BUY, position.stop_loss) * (1 + self.fee_rate)
                available[instrument.quote] -= position.quantity * buyback
        return {asset: max(0.0, amount) for asset, amount in available.items()}

    @staticmethod
    def _check(
        intent: TradeIntent, portfolio: Portfolio, now: datetime, check_id: str, verdict: _Verdict
    ) -> RiskCheck:
        approved = not verdict.reasons
        return RiskCheck(
            check_id=check_id,
            account=portfolio.account,
            time=now,
            symbol=intent.symbol,
            signal_id=intent.signal_id,
            position_id=None,
            approved=approved,
            reasons=(RiskReason.APPROVED,) if approved else tuple(dict.fromkeys(verdict.reasons)),
            # A rejected check carries no size: nothing may be traded on it.
            quantity=verdict.quantity if approved else 0.0,
            notional_usdt=verdict.notional_usdt if approved else 0.0,
            equity_usdt=verdict.equity,
            risk_usdt=verdict.risk_usdt if approved else 0.0,
            adjustments=tuple(verdict.adjustments) if approved else (),
            leverage=verdict.leverage if approved else 1.0,
            intent_id=intent.intent_id,
            strategy=intent.strategy,
            direction=intent.direction,
            entry=intent.entry if math.isfinite(intent.entry) else None,
            stop_loss=intent.stop_loss if intent.stop_loss is not None and math.isfinite(intent.stop_loss) else None,
            limit_price=verdict.limit_price if approved else None,
        )


# Reasons that leave nothing to size: the intent's own numbers or the account's state are unusable.
_UNSIZEABLE = frozenset({
    RiskReason.INVALID_ENTRY, RiskReason.ENTRY_AWAY_FROM_MARKET, RiskReason.STOP_MISSING, RiskReason.STOP_WRONG_SIDE,
    RiskReason.SIZE_INVALID, RiskReason.LEVERAGE_INVALID,
})


def _safe_equity(portfolio: Portfolio, prices: Mapping[str, float]) -> float:
    try:
        equity = portfolio.equity_usdt(prices)
    except MissingPriceError:
        return 0.0
    return equity if math.isfinite(equity) else 0.0


def _utc_day(moment: datetime) -> date:
    if moment.tzinfo is UTC:
        return moment.date()  # the usual case, on every valuation of every account
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: TripleGain times are UTC-aware")
    return moment.astimezone(UTC).date()
