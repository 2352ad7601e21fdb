"""The same EMA 9/21 cross traded by the backtest kernel and by vectorbt's ``Portfolio.from_signals``.

The configuration both can express: one pair (XRP/USDT), all cash at the start, long only; each
entry spends a fixed fraction (half) of the equity, fee included, at the candle's close through the
slippage; each exit sells the whole position at the close through the slippage; the same fee rate.
vectorbt expresses it as ``size=0.5, size_type="percent"`` with ``fees`` and ``slippage``.

What the kernel needs for it, and why: a stop is mandatory in its risk rules, so the entries
carry one 8 % away, which the market never reaches here (the comparison asserts no stop fired);
the position-fraction cap is the binding size (``risk_per_trade`` over that stop distance would
allow more); the rules that vectorbt has no notion of are switched off in the configuration (the
BTC-correlation haircut, the loss cooldown, the daily-loss and drawdown pauses, the trailing stop,
the volatility halt). Both sides get the same signals: the EMA crosses are computed once here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import talib
from pydantic import BaseModel

from triplegain_core.backtest.engine import run_backtest
from triplegain_core.backtest.history import history_from_candles
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.model.market import US_PER_MINUTE, Asset, Candle, us_to_datetime
from triplegain_core.model.orders import OrderPurpose
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.risk.guards import GuardSettings
from triplegain_core.risk.rules import RiskLimits
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.registry import LoadedStrategy

T0 = 1_767_225_600 * 1_000_000
FRACTION = 0.5
CASH = 10_000.0
SETTINGS = Settings(
    symbols=("XRP/USDT",), starting_balances={Asset.USDT: CASH, Asset.XRP: 0.0, Asset.BTC: 0.0},
    risk=RiskLimits(risk_per_trade=0.05, max_position_fraction=FRACTION, max_stop_distance=0.2,
                    daily_loss_limit=1.0, max_drawdown=1.0, min_notional_usdt=0.0, trailing_activation_r=1000.0,
                    consecutive_losses=1_000_000, cooldown_minutes=0.0, btc_correlation_size_factor=1.0),
    guards=GuardSettings(volatility_halt_multiple=100.0),
    strategies=StrategySettings(enabled=(), technical_agent=False))


@dataclass(frozen=True, slots=True)
class Comparison:
    """Both sides' trades as (bar, side, size, price, fee), and their final equity."""

    ours: list[tuple[int, str, float, float, float]]
    theirs: list[tuple[int, str, float, float, float]]
    our_equity: float
    their_equity: float
    stops: int

    def mismatches(self) -> int:
        """Trades that differ in bar, side, size, price or fee (and any count difference)."""
        different = sum(a[:2] != b[:2] or not np.isclose(a[2:], b[2:], rtol=1e-9, atol=1e-9).all()
                        for a, b in zip(self.ours, self.theirs, strict=False))
        return different + abs(len(self.ours) - len(self.theirs))


def compare(minutes: int = 3000, seed: int = 4) -> Comparison:
    """Run both on a seeded random walk of ``minutes`` 1m candles."""
    rng = np.random.default_rng(seed)
    closes = 0.5 * np.exp(np.cumsum(rng.normal(0, 0.0007, minutes)))
    opens = np.concatenate([[0.5], closes[:-1]])
    highs, lows = np.maximum(opens, closes) * 1.0002, np.minimum(opens, closes) * 0.9998
    candles = [Candle("XRP/USDT", "1m", T0 + i * US_PER_MINUTE, float(o), float(h), float(lo), float(c), 100.0, 5)
               for i, (o, h, lo, c) in enumerate(zip(opens, highs, lows, closes, strict=True))]
    fast, slow = talib.EMA(closes, 9), talib.EMA(closes, 21)
    known = ~np.isnan(slow)
    above = fast > slow
    entries = np.zeros(minutes, dtype=bool)
    exits = np.zeros(minutes, dtype=bool)
    entries[1:] = above[1:] & ~above[:-1] & known[:-1]
    exits[1:] = ~above[1:] & above[:-1] & known[:-1]
    strategy = _signals(set(np.flatnonzero(entries).tolist()), set(np.flatnonzero(exits).tolist()))
    account = run_backtest(SETTINGS, history_from_candles(candles), strategies=[strategy]).account("paper:ema_cross")
    ours = [(int((f.time.timestamp() * 1_000_000 - T0) // US_PER_MINUTE) - 1, f.side.value, f.quantity, f.price, f.fee)
            for f in account.trail.fills]
    import vectorbt as vbt  # a test dependency, and slow to import

    portfolio = vbt.Portfolio.from_signals(pd.Series(closes), entries, exits, size=FRACTION, size_type="percent",
                                           fees=SETTINGS.fee_rate, slippage=SETTINGS.slippage, init_cash=CASH,
                                           freq="1min")
    theirs = [(int(o.Timestamp), o.Side.lower(), float(o.Size), float(o.Price), float(o.Fees))
              for o in portfolio.orders.records_readable.itertuples()]
    stops = sum(p.exit_reason is OrderPurpose.STOP_LOSS for p in account.trail.positions.values())
    return Comparison(ours, theirs, account.trail.curve.equity[-1], float(portfolio.value().iloc[-1]), stops)


def _signals(entries: set[int], exits: set[int]) -> LoadedStrategy:
    """LONG at each cross up while flat, CLOSE at each cross down while long (bars by index)."""

    class Config(BaseModel):
        timeframe: str = "1m"
        window: int = 5

    def generate(snapshot: MarketSnapshot, config: Config, state: StrategyState) -> Signal | None:
        window = snapshot.window(state.symbol, "1m")
        if window is None:
            return None
        bar = int((int(window.open_time_us[-1]) - T0) // US_PER_MINUTE)
        price = float(window.close[-1])
        common = {"signal_id": f"ema_cross:{bar}", "strategy": "ema_cross", "strategy_version": "1",
                  "symbol": state.symbol, "timeframe": "1m", "time": us_to_datetime(snapshot.ts_us),
                  "strength": 0.5, "entry": price}
        if bar in entries and state.open_action is None:
            return Signal(**common, action=SignalAction.LONG, stop_loss=price * 0.92, take_profit=price * 10,
                          reason="EMA 9 crossed above EMA 21")
        if bar in exits and state.open_action is SignalAction.LONG:
            return Signal(**common, action=SignalAction.CLOSE, reason="EMA 9 crossed below EMA 21")
        return None

    return LoadedStrategy(name="ema_cross", version="1", symbols=("XRP/USDT",), config=Config(), generate=generate,
                          source="tests", reads=frozenset({"candles"}))
