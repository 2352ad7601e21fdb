"""An independent check of the paper executor: the same EMA-crossover rules, traded by the real
trading loop and computed in vectorized pandas, give the same trades and final equity.

The loop side is the production path: real candles of ``../shared/data`` published to Redis
through the hot-state contract, read by ``TradingLoop``, the strategy run by the
``StrategyRunner`` on its own account, every intent through the RiskAgent, the OrderManager,
the PaperExecutor, the PositionTracker and the Portfolio, every step stored in PostgreSQL.

The rules, long only on XRP/USDT: enter at the close of the candle where EMA 9 crosses above
EMA 21, exit at the close of the candle where it crosses below; a stop 1.5 % under the entry
close, checked on every later candle's low (before that candle's signal, as the loop checks
exits first) and filled at the stop level. Fills move 0.05 % against the taker, fees are 0.1 %
of the notional. The size is the RiskAgent's position cap, 10 % of equity at the worst fill
price plus fee. The other risk limits (drawdown pause, daily loss, cooldown, BTC-correlation
size cut, trailing stop) are configured not to bind; the stop, the position cap and the
one-position-per-symbol rule are mirrored on the vectorized side.

Both sides compute their EMAs their own way (the strategy incrementally, candle by candle;
pandas with ``ewm``); a cross needs the EMAs more than ``DEAD_BAND`` of the price apart, so
the last-bit rounding differences between the two cannot flip a flat-market tie.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import psycopg
import pytest
from pydantic import BaseModel

from streamer.executor.loop import TradingLoop
from tests.support.candle_feed import feed_and_drain
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.contracts.hot_state import HotStateReader
from triplegain_core.execution.account import strategy_account_name
from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.model.market import US_PER_MINUTE, Asset, Candle, datetime_to_us, us_to_datetime
from triplegain_core.model.orders import OrderPurpose
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.risk.rules import RiskLimits
from triplegain_core.storage.trading_store import TradingStore
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.registry import load_strategy

SYMBOL = "XRP/USDT"
FAST, SLOW = 9, 21
STOP = 0.015
SIZE = 0.10
FEE, SLIPPAGE = 0.001, 0.0005
START_USDT = 10_000.0
DEAD_BAND = 1e-9


class EmaCross:
    """The strategy under test, as a plugin: EMA-9/21 crossover, long only."""

    NAME = "ema_cross_check"
    VERSION = "1.0.0"
    SYMBOLS = (SYMBOL,)
    READS = frozenset({"candles"})

    class Config(BaseModel):
        fast: int = FAST
        slow: int = SLOW
        stop: float = STOP

    @staticmethod
    def generate_signal(snapshot: MarketSnapshot, config: Config, state: StrategyState) -> Signal | None:
        window = snapshot.window(state.symbol, "1m")
        if window is None:
            return None
        memory = state.memory
        seen = memory.get("last_open_us")
        start = 0 if seen is None else int(np.searchsorted(window.open_time_us, int(seen), side="right"))
        if start == len(window):
            return None
        fast_alpha, slow_alpha = 2.0 / (config.fast + 1), 2.0 / (config.slow + 1)
        previous = memory.get("diff")
        for close in window.close[start:].tolist():
            if "fast" in memory:
                memory["fast"] = (1.0 - fast_alpha) * memory["fast"] + fast_alpha * close
                memory["slow"] = (1.0 - slow_alpha) * memory["slow"] + slow_alpha * close
            else:
                memory["fast"] = memory["slow"] = close
            previous, memory["diff"] = memory.get("diff"), memory["fast"] - memory["slow"]
        memory["last_open_us"] = float(window.last_open_time_us)
        if previous is None:
            return None
        close = float(window.close[-1])
        band = DEAD_BAND * close
        diff = memory["diff"]
        key = f"{EmaCross.NAME}:{state.symbol}:1m:{window.last_open_time_us}"
        time = us_to_datetime(window.last_close_time_us)
        if previous <= band < diff:
            return Signal(
                signal_id=key, strategy=EmaCross.NAME, strategy_version=EmaCross.VERSION, symbol=state.symbol,
                timeframe="1m", time=time, action=SignalAction.LONG, strength=1.0, entry=close,
                stop_loss=close * (1.0 - config.stop), take_profit=close * 10.0, reason="EMA cross up",
            )
        if previous >= -band > diff:
            return Signal(
                signal_id=key + ":close", strategy=EmaCross.NAME, strategy_version=EmaCross.VERSION,
                symbol=state.symbol, timeframe="1m", time=time, action=SignalAction.CLOSE, strength=1.0,
                entry=close, reason="EMA cross down",
            )
        return None


@dataclass(frozen=True)
class Trade:
    opened_at: datetime
    entry_price: float
    quantity: float
    closed_at: datetime | None
    exit_price: float | None
    exit_reason: OrderPurpose | None


def _candles(shared_data) -> pd.DataFrame:
    """Real XRP/USDT 5m candles, relabelled as consecutive 1m candles (the loop's timeframe)."""
    frame = pd.read_parquet(shared_data / "binance_xrp-usdt-perp_5m.parquet")
    start = datetime_to_us(frame["ts"].iloc[0].to_pydatetime())
    frame["open_us"] = start + np.arange(len(frame), dtype=np.int64) * US_PER_MINUTE
    return frame


def vectorized(frame: pd.DataFrame) -> tuple[list[Trade], float]:
    """The same rules in pandas: signals as columns, then one step per trade (equity compounds)."""
    close, low = frame["close"], frame["low"].to_numpy()
    diff = close.ewm(span=FAST, adjust=False).mean() - close.ewm(span=SLOW, adjust=False).mean()
    band = DEAD_BAND * close
    previous = diff.shift()
    up = ((previous <= band) & (diff > band)).to_numpy()
    down = ((previous >= -band) & (diff < -band)).to_numpy()
    closes = close.to_numpy()
    close_time = [us_to_datetime(int(t) + US_PER_MINUTE) for t in frame["open_us"]]
    entries = np.flatnonzero(up)
    cash, trades, bar = START_USDT, [], 0
    held: tuple[int, float, float] | None = None  # entry bar, quantity, stop
    while True:
        later = entries[entries >= bar]
        if later.size == 0:
            break
        entry = int(later[0])
        fill = closes[entry] * (1.0 + SLIPPAGE)
        quantity = SIZE * cash / (fill * (1.0 + FEE))
        cash -= quantity * fill + FEE * quantity * fill
        stop = closes[entry] * (1.0 - STOP)
        held = (entry, quantity, fill)
        hits = np.flatnonzero(low[entry + 1:] <= stop)
        downs = np.flatnonzero(down[entry + 1:])
        stop_bar = entry + 1 + int(hits[0]) if hits.size else None
        down_bar = entry + 1 + int(downs[0]) if downs.size else None
        if stop_bar is None and down_bar is None:
            trades.append(Trade(close_time[entry], fill, quantity, None, None, None))
            break
        if down_bar is None or (stop_bar is not None and stop_bar <= down_bar):
            # Exits are checked before the candle's signal: a re-entry may follow on the same candle.
            exit_bar, price, reason, bar = stop_bar, stop * (1.0 - SLIPPAGE), OrderPurpose.STOP_LOSS, stop_bar
        else:
            exit_bar, price, reason = down_bar, closes[down_bar] * (1.0 - SLIPPAGE), OrderPurpose.SIGNAL_CLOSE
            bar = down_bar + 1
        cash += quantity * price - FEE * quantity * price
        trades.append(Trade(close_time[entry], fill, quantity, close_time[exit_bar], price, reason))
        held = None
    equity = cash + (held[1] * closes[-1] if held is not None else 0.0)
    return trades, equity


@pytest.fixture
def traded(shared_data, redis_client, db: psycopg.Connection) -> tuple[pd.DataFrame, TradingLoop]:
    frame = _candles(shared_data)
    settings = Settings(
        symbols=(SYMBOL,),
        starting_balances={Asset.USDT: START_USDT, Asset.XRP: 0.0, Asset.BTC: 0.0},
        fee_rate=FEE,
        slippage=SLIPPAGE,
        strategies=StrategySettings(technical_agent=False),
        risk=RiskLimits(max_position_fraction=SIZE, max_drawdown=1.0, daily_loss_limit=1.0,
                        consecutive_losses=10**9, btc_correlation_size_factor=1.0, trailing_activation_r=1e9),
    )
    strategy = load_strategy(EmaCross, "test_paper_executor_vectorized")
    loop = TradingLoop(settings, HotStateReader(redis_client), TradingStore(db), strategies=[strategy],
                       start_stream_id="0")
    candles = [Candle(SYMBOL, "1m", int(row.open_us), row.open, row.high, row.low, row.close, row.volume, 1)
               for row in frame.itertuples()]
    feed_and_drain(loop, redis_client, candles)
    loop.kernel.record_snapshot()
    return frame, loop


def test_executor_trades_equal_the_vectorized_computation(traded, db: psycopg.Connection) -> None:
    frame, loop = traded
    expected, expected_equity = vectorized(frame)
    account = strategy_account_name("paper", EmaCross.NAME)
    store = TradingStore(db)
    stored = store.positions(account)
    actual = [Trade(p.opened_at, p.entry_price, p.quantity, p.closed_at, p.exit_price, p.exit_reason) for p in stored]

    reasons = {t.exit_reason for t in expected}
    assert len(expected) > 20 and {OrderPurpose.STOP_LOSS, OrderPurpose.SIGNAL_CLOSE} <= reasons
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert (got.opened_at, got.closed_at, got.exit_reason) == (want.opened_at, want.closed_at, want.exit_reason)
        assert got.entry_price == pytest.approx(want.entry_price, rel=1e-12)
        assert got.quantity == pytest.approx(want.quantity, rel=1e-12)
        if want.exit_price is not None:
            assert got.exit_price == pytest.approx(want.exit_price, rel=1e-12)

    equity = loop.kernel.account(account).portfolio.equity_usdt({SYMBOL: float(frame["close"].iloc[-1])})
    assert round(equity, 2) == round(expected_equity, 2)
    assert abs(equity - expected_equity) < 0.005
    assert store.equity_curve(account)[-1][1] == pytest.approx(equity, abs=1e-9)
    # Every fill went through an approved risk check.
    audited = store.fills_with_checks(account)
    assert len(audited) == sum(1 + (t.closed_at is not None) for t in expected)
    assert all(approved for _, _, approved in audited)


def test_the_account_scorecard_is_computed_from_what_is_stored(traded, db: psycopg.Connection) -> None:
    frame, _ = traded
    expected, expected_equity = vectorized(frame)
    account = strategy_account_name("paper", EmaCross.NAME)
    metrics = TradingStore(db).account_metrics(account)
    closed = [t for t in expected if t.exit_price is not None]
    pnls = [t.quantity * (t.exit_price - t.entry_price) - FEE * t.quantity * (t.entry_price + t.exit_price)
            for t in closed]
    assert metrics.trades == len(closed)
    assert metrics.wins == sum(p > 0 for p in pnls)
    assert metrics.realized_pnl_usdt == pytest.approx(sum(pnls), rel=1e-9)
    assert metrics.pnl_by_symbol.keys() == {SYMBOL}
    assert metrics.start_equity_usdt == pytest.approx(START_USDT)
    assert metrics.end_equity_usdt == pytest.approx(expected_equity, abs=0.005)
    assert 0 < metrics.max_drawdown < 1 and metrics.sharpe is not None and metrics.sortino is not None
