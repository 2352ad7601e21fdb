"""Entry, stop and take-profit placement shared by the built-in strategies.

Every entry signal's stop sits between ``min_stop_distance`` and ``max_stop_distance`` of the
entry: the maximum (2% by default) so the RiskAgent's mandatory-stop rule passes, the minimum
so a near-zero volatility cannot put the stop inside the spread and fees.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from triplegain_core.marketdata.snapshot import CandleWindow
from triplegain_core.model.market import us_to_datetime
from triplegain_core.model.signals import Signal, SignalAction


class BracketConfig(BaseModel):
    """Signal filter and stop / take-profit placement common to every built-in strategy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_strength: float = Field(default=0.0, ge=0.0, le=1.0)
    reward_risk: float = Field(default=2.0, gt=0.0)
    max_stop_distance: float = Field(default=0.02, gt=0.0, lt=1.0)
    min_stop_distance: float = Field(default=0.002, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _ordered_stops(self) -> BracketConfig:
        if self.min_stop_distance > self.max_stop_distance:
            raise ValueError("min_stop_distance must not exceed max_stop_distance")
        return self


class Bracket(Protocol):
    """The fields placement reads: BracketConfig's, also found on TechnicalAgentConfig."""

    @property
    def min_strength(self) -> float: ...
    @property
    def reward_risk(self) -> float: ...
    @property
    def max_stop_distance(self) -> float: ...
    @property
    def min_stop_distance(self) -> float: ...


def clamp_stop_distance(distance: float, entry: float, config: Bracket) -> float:
    """``distance`` (in price) clamped into [min, max] stop distance times ``entry``."""
    return min(max(distance, config.min_stop_distance * entry), config.max_stop_distance * entry)


def clip01(value: float) -> float:
    """``value`` clipped into 0..1."""
    return min(1.0, max(0.0, value))


def entry_signal(
    *,
    strategy: str,
    version: str,
    symbol: str,
    timeframe: str,
    key_us: int,
    time_us: int,
    action: SignalAction,
    strength: float,
    entry: float,
    stop_distance: float,
    config: Bracket,
    reason: str,
    indicators: dict[str, float],
    take_profit: float | None = None,
    invalidation: float | None = None,
) -> Signal | None:
    """A LONG/SHORT signal with a clamped stop; None when below ``min_strength``.

    ``take_profit`` defaults to ``reward_risk`` times the stop distance; a given one on the
    wrong side of the entry falls back to that default too. ``key_us`` (the candle open time,
    or the book time) makes the id deterministic, so a replay yields the same ids.
    """
    if strength < config.min_strength:
        return None
    sign = 1.0 if action is SignalAction.LONG else -1.0
    distance = clamp_stop_distance(stop_distance, entry, config)
    if take_profit is None or sign * (take_profit - entry) <= 0.0:
        take_profit = entry + sign * config.reward_risk * distance
    if invalidation is not None and sign * (entry - invalidation) <= 0.0:
        invalidation = None
    return Signal(
        signal_id=f"{strategy}:{symbol}:{timeframe}:{key_us}",
        strategy=strategy,
        strategy_version=version,
        symbol=symbol,
        timeframe=timeframe,
        time=us_to_datetime(time_us),
        action=action,
        strength=clip01(strength),
        entry=entry,
        stop_loss=entry - sign * distance,
        take_profit=take_profit,
        invalidation=invalidation,
        reason=reason,
        indicators=indicators,
    )


def close_signal(
    *, strategy: str, version: str, window: CandleWindow, reason: str, indicators: dict[str, float]
) -> Signal:
    """A CLOSE of the strategy's open intent on the last candle of ``window``."""
    return Signal(
        signal_id=f"{strategy}:{window.symbol}:{window.timeframe}:{window.last_open_time_us}:close",
        strategy=strategy,
        strategy_version=version,
        symbol=window.symbol,
        timeframe=window.timeframe,
        time=us_to_datetime(window.last_close_time_us),
        action=SignalAction.CLOSE,
        strength=1.0,
        entry=float(window.close[-1]),
        reason=reason,
        indicators=indicators,
    )


def candle_signal(
    *,
    strategy: str,
    version: str,
    window: CandleWindow,
    action: SignalAction,
    strength: float,
    stop_distance: float,
    config: Bracket,
    reason: str,
    indicators: dict[str, float],
    take_profit: float | None = None,
    invalidation: float | None = None,
) -> Signal | None:
    """:func:`entry_signal` at the close of the last candle of ``window``."""
    return entry_signal(
        strategy=strategy,
        version=version,
        symbol=window.symbol,
        timeframe=window.timeframe,
        key_us=window.last_open_time_us,
        time_us=window.last_close_time_us,
        action=action,
        strength=strength,
        entry=float(window.close[-1]),
        stop_distance=stop_distance,
        config=config,
        reason=reason,
        indicators=indicators,
        take_profit=take_profit,
        invalidation=invalidation,
    )
