"""Order flow: aggressive trades and resting book leaning the same way.

Over the trades of the last ``lookback_s`` seconds, the taker imbalance is
(buy qty - sell qty) / (buy qty + sell qty); on the book, the depth imbalance of the top
``depth`` levels. LONG when both are at least their thresholds (entry at the best ask, where a
buyer pays), SHORT when both are at most minus them (entry at the best bid). Without a book in
the snapshot there is no decision.
"""

from __future__ import annotations

from pydantic import Field

from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.model.market import TRADED_SYMBOLS, US_PER_SECOND
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.levels import BracketConfig, clip01, entry_signal

NAME = "order_flow"
VERSION = "1.0.0"
SYMBOLS = TRADED_SYMBOLS
READS = frozenset({"time", "books", "trades"})  # time: trades age out of the look-back
TIMEFRAME = "book"
LAST_ENTRY_KEY = "last_entry_us"


class Config(BracketConfig):
    """Look-back, minimum activity and the two imbalance thresholds."""

    lookback_s: float = Field(default=300.0, gt=0.0)
    min_trades: int = Field(default=10, ge=1)
    trade_imbalance: float = Field(default=0.3, gt=0.0, le=1.0)
    book_imbalance: float = Field(default=0.2, gt=0.0, le=1.0)
    depth: int = Field(default=5, ge=1)
    stop_distance: float = Field(default=0.005, gt=0.0, lt=1.0)
    # The book changes every few milliseconds: while the strategy's intent already points the
    # same way, say it again at most this often rather than on every update.
    repeat_after_s: float = Field(default=60.0, ge=0.0)


def generate_signal(snapshot: MarketSnapshot, config: Config, state: StrategyState) -> Signal | None:
    """LONG/SHORT when taker flow and book depth agree; None without a book or enough trades."""
    book = snapshot.book(state.symbol)
    if book is None:
        return None
    tape = snapshot.recent_trades(state.symbol)
    if tape is None:
        return None
    since = snapshot.ts_us - int(config.lookback_s * US_PER_SECOND)
    buy, sell, count = tape.taker_flow(since, snapshot.ts_us)
    if count < config.min_trades or buy + sell <= 0.0:
        return None
    flow = (buy - sell) / (buy + sell)
    depth = book.imbalance(config.depth)
    if flow >= config.trade_imbalance and depth >= config.book_imbalance:
        action, entry = SignalAction.LONG, book.best_ask
    elif flow <= -config.trade_imbalance and depth <= -config.book_imbalance:
        action, entry = SignalAction.SHORT, book.best_bid
    else:
        return None
    last_entry_us = state.memory.get(LAST_ENTRY_KEY)
    if (state.open_action is action and last_entry_us is not None
            and snapshot.ts_us - last_entry_us < config.repeat_after_s * US_PER_SECOND):
        return None
    signal = entry_signal(
        strategy=NAME,
        version=VERSION,
        symbol=state.symbol,
        timeframe=TIMEFRAME,
        key_us=book.ts_us,
        time_us=snapshot.ts_us,
        action=action,
        strength=0.5 * clip01(abs(flow)) + 0.5 * clip01(abs(depth)),
        entry=entry,
        stop_distance=config.stop_distance * entry,
        config=config,
        reason=f"{count} trades {flow:+.2f} taker imbalance, book depth {depth:+.2f} over {config.depth} levels",
        indicators={"trade_imbalance": flow, "book_imbalance": depth, "trades": float(count),
                    "best_bid": book.best_bid, "best_ask": book.best_ask},
    )
    if signal is not None:
        state.memory[LAST_ENTRY_KEY] = float(snapshot.ts_us)
    return signal
