"""Market making: join the side the book leans to when the spread pays for the round trip.

When the relative spread is at least ``min_spread`` (two fees and an edge), the microprice
shows where the next trade is likelier: leaning up by at least ``lean_threshold`` of the
half-spread, bid at the best bid with the best ask as take-profit (LONG); leaning down, offer
at the best ask toward the best bid (SHORT). Without a book there is no decision.
"""

from __future__ import annotations

from pydantic import Field

from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.model.market import TRADED_SYMBOLS, US_PER_SECOND
from triplegain_core.model.signals import Signal, SignalAction
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.levels import BracketConfig, clip01, entry_signal

NAME = "market_making"
VERSION = "1.0.0"
SYMBOLS = TRADED_SYMBOLS
READS = frozenset({"time", "books"})  # time: how long since it last said the same
TIMEFRAME = "book"
LAST_ENTRY_KEY = "last_entry_us"


class Config(BracketConfig):
    """Minimum spread, lean threshold and stop placement in spreads."""

    min_spread: float = Field(default=0.003, gt=0.0, lt=0.5)
    lean_threshold: float = Field(default=0.2, gt=0.0, le=1.0)
    stop_spreads: float = Field(default=2.0, gt=0.0)
    # The book changes every few milliseconds: while the strategy's intent already points the
    # same way, say it again at most this often rather than on every update.
    repeat_after_s: float = Field(default=60.0, ge=0.0)


def generate_signal(snapshot: MarketSnapshot, config: Config, state: StrategyState) -> Signal | None:
    """Quote one side of a wide enough spread, the side the microprice leans to."""
    book = snapshot.book(state.symbol)
    if book is None:
        return None
    relative_spread = book.spread / book.mid
    if relative_spread < config.min_spread:
        return None
    lean = (book.microprice - book.mid) / (0.5 * book.spread)
    if lean >= config.lean_threshold:
        action, entry, target = SignalAction.LONG, book.best_bid, book.best_ask
    elif lean <= -config.lean_threshold:
        action, entry, target = SignalAction.SHORT, book.best_ask, book.best_bid
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
        strength=0.5 * clip01(abs(lean)) + 0.5 * clip01(relative_spread / (2.0 * config.min_spread)),
        entry=entry,
        stop_distance=config.stop_spreads * book.spread,
        config=config,
        reason=f"spread {relative_spread * 1e4:.1f} bp, microprice leans {lean:+.2f} of the half-spread",
        indicators={"spread": relative_spread, "lean": lean, "best_bid": book.best_bid, "best_ask": book.best_ask},
        take_profit=target,
    )
    if signal is not None:
        state.memory[LAST_ENTRY_KEY] = float(snapshot.ts_us)
    return signal
