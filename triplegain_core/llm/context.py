"""What a model is told at one moment of the market, from what was known at that moment only.

One builder for every deliberation, live or in a backtest: :func:`market_context` makes the
:class:`~triplegain_core.llm.prompts.MarketContext` of a symbol from its closed 1m candles up to
the decision's market time and the deciding account as it stood then. Everything it shows is a
function of those inputs alone, over fixed spans of market time (the indicators over the last
``INDICATOR_MINUTES``, the regime over the last ``REGIME_MINUTES``: spans, not counts, so a
gap in the candles cuts both the same way): not of when a feature table was last refreshed,
nor of how much history the caller happened to hold. So a backtest at the same market time
builds the very prompt a paper run built, and the answer recorded then is found again by its
prompt hash.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

import pandas as pd

from triplegain_core.analysis.indicators import latest_indicators
from triplegain_core.analysis.symbol_regime import OHLCV, detect_symbol_regime
from triplegain_core.llm.prompts import MarketContext
from triplegain_core.model.market import US_PER_MINUTE, Asset, Candle, us_to_datetime
from triplegain_core.portfolio.positions import Position, PositionStatus

CONTEXT_MINUTES = 60
"""The minutes of 1m candles the prompt lists."""
INDICATOR_MINUTES = 300
"""The minutes of 1m candles the indicators are computed over."""
REGIME_MINUTES = 300 * 5
"""The minutes of 1m candles the regime is read on (300 candles of 5m)."""
REGIME_VOLATILITY_LOOKBACK = 200
"""The 5m candles whose ATR% ranks the regime's volatility state."""
RECENT_TRADES = 10
"""The account's latest closed trades on the symbol the prompt lists."""
HISTORY_MINUTES = max(CONTEXT_MINUTES, INDICATOR_MINUTES, REGIME_MINUTES)
"""The minutes of 1m candles before the decision a context reads: a caller need not hand over more."""


def market_context(symbol: str, candles: Sequence[Candle], positions: Sequence[Position],
                   balances: Mapping[Asset, float], equity_usdt: float | None) -> MarketContext:
    """The context of ``symbol`` at the close of the last of ``candles`` (its closed 1m candles,
    oldest first; ValueError without any).

    ``positions`` are the deciding account's positions as they stood at that moment (any
    symbol: the open ones and the latest closed ones on ``symbol`` are shown), ``balances`` and
    ``equity_usdt`` its holdings and value then (empty and None before it has any).
    """
    if not candles:
        raise ValueError(f"a market context of {symbol} needs at least one closed candle")
    last = candles[-1]
    own = [p for p in positions if p.symbol == symbol]
    return MarketContext(
        symbol=symbol,
        time=us_to_datetime(last.close_time_us),
        price=last.close,
        candles=tuple(_last_minutes(candles, CONTEXT_MINUTES)),
        indicators=latest_indicators(_last_minutes(candles, INDICATOR_MINUTES)) or {},
        regime=_regime(symbol, _last_minutes(candles, REGIME_MINUTES)),
        positions=tuple(p for p in own if p.status is PositionStatus.OPEN),
        recent_trades=tuple(p for p in own if p.status is PositionStatus.CLOSED)[-RECENT_TRADES:],
        balances=dict(balances),
        equity_usdt=equity_usdt,
    )


def _last_minutes(candles: Sequence[Candle], minutes: int) -> Sequence[Candle]:
    """The candles that opened in the last ``minutes`` before the last one closed."""
    start_us = candles[-1].close_time_us - minutes * US_PER_MINUTE
    return candles[bisect.bisect_left(candles, start_us, key=lambda c: c.open_time_us):]


def _regime(symbol: str, candles: Sequence[Candle]) -> str | None:
    """The 5m regime label at the last candle, or None while its indicators warm up."""
    frame = pd.DataFrame([(c.open_time, c.open, c.high, c.low, c.close, c.volume) for c in candles],
                         columns=["open_time", *OHLCV])
    try:
        regime = detect_symbol_regime(symbol, frame, volatility_lookback=REGIME_VOLATILITY_LOOKBACK).result
    except ValueError:
        return None
    return f"{regime.regime.value} (score {regime.score:+.2f}, volatility {regime.volatility.value})"
