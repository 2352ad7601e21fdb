"""Every backtest measure split by the market regime at entry.

The regime is the detector's label (:class:`~triplegain_core.analysis.regime.RegimeDetector`) on
the 5m candles of the traded pair, as the platform judges it (``DEFAULT_REGIME_TIMEFRAME``): a
trade's regime is that of the last 5m candle closed when it was entered, so it is known at entry
(never judged on the candles after). A trade entered while the indicators were still warming up
is counted under ``warming up``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from triplegain_core.analysis.ml_dataset import ml_dataset
from triplegain_core.analysis.symbol_regime import DEFAULT_REGIME_TIMEFRAME
from triplegain_core.backtest.engine import AccountResult
from triplegain_core.backtest.history import BacktestHistory
from triplegain_core.model.market import datetime_to_us, timeframe_us
from triplegain_core.portfolio.positions import PositionStatus

WARMING_UP = "warming up"


@dataclass(frozen=True, slots=True)
class RegimeRow:
    """One account's closed trades entered in one regime."""

    account: str
    regime: str
    trades: int
    win_rate: float
    expectancy_usdt: float | None
    pnl_usdt: float


class RegimeTimeline:
    """Per symbol, the regime label of each closed 5m candle, by close time."""

    def __init__(self, history: BacktestHistory, timeframe: str = DEFAULT_REGIME_TIMEFRAME) -> None:
        span = timeframe_us(timeframe)
        self._closes: dict[str, list[int]] = {}
        self._labels: dict[str, list[str]] = {}
        for symbol in history.symbols:
            candles = pd.DataFrame([(c.open_time, c.open, c.high, c.low, c.close, c.volume)
                                    for c in history.candles if c.symbol == symbol],
                                   columns=["open_time", "open", "high", "low", "close", "volume"])
            frame = ml_dataset(candles, timeframe, (1,))
            opens = frame["open_time"].map(lambda t: datetime_to_us(t.to_pydatetime())).tolist()
            self._closes[symbol] = [t + span for t in opens]
            self._labels[symbol] = [WARMING_UP if pd.isna(label) else str(label) for label in frame["regime"]]

    def at(self, symbol: str, when_us: int) -> str:
        """The regime of ``symbol`` known at ``when_us``: its last candle closed by then."""
        closes = self._closes.get(symbol, [])
        index = bisect.bisect_right(closes, when_us) - 1
        return self._labels[symbol][index] if index >= 0 else WARMING_UP


def metrics_by_regime(accounts: Iterable[AccountResult], timeline: RegimeTimeline) -> list[RegimeRow]:
    """Each account's closed trades grouped by the regime at their entry, accounts then regimes in order."""
    rows = []
    for account in accounts:
        groups: dict[str, list[tuple[bool, float | None]]] = {}
        for position in account.trail.positions.values():
            if position.status is not PositionStatus.CLOSED:
                continue
            regime = timeline.at(position.symbol, datetime_to_us(position.opened_at))
            groups.setdefault(regime, []).append((position.realized_pnl > 0, position.realized_pnl_usdt))
        for regime in sorted(groups):
            trades = groups[regime]
            valued = [pnl for _, pnl in trades if pnl is not None]
            rows.append(RegimeRow(account.name, regime, len(trades), sum(won for won, _ in trades) / len(trades),
                                  sum(valued) / len(valued) if valued else None, sum(valued)))
    return rows
