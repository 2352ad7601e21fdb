"""What a deliberation round tells the models, read from the system of record.

For each symbol, the 1m candles the context reads (:data:`~triplegain_core.llm.context.HISTORY_MINUTES`
of them) and the deliberating account's positions and latest balances, made into a context by
the one builder every deliberation uses (:func:`~triplegain_core.llm.context.market_context`), so a
backtest at the same market time builds the same prompt. The streamer stores the forming candle
too, so the newest stored candle of a symbol is not used: a context ends at the latest candle
another one followed, whose close is the market time the decision is made at, which its expiry
counts from.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from triplegain_core.llm.context import HISTORY_MINUTES, market_context
from triplegain_core.llm.prompts import MarketContext
from triplegain_core.model.market import US_PER_MINUTE, us_to_datetime
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.portfolio_store import PortfolioStore
from triplegain_core.storage.trading_store import TradingStore


def market_contexts(conn: psycopg.Connection, symbols: Sequence[str], account: str) -> list[MarketContext]:
    """One context per symbol that has closed 1m candles stored, in ``symbols`` order."""
    store = MarketStore(conn)
    newest = store.last_candles(symbols)
    positions = TradingStore(conn).positions(account)
    latest = PortfolioStore(conn).latest_snapshots(account)
    balances = dict(latest[0].balances) if latest else {}
    equity = latest[0].equity_usdt if latest else None
    contexts = []
    for symbol in symbols:
        forming = newest.get(symbol)
        if forming is None:
            continue
        start = us_to_datetime(forming.open_time_us - HISTORY_MINUTES * US_PER_MINUTE)
        closed = store.candles(symbol, "1m", start, us_to_datetime(forming.open_time_us))
        if closed:
            contexts.append(market_context(symbol, closed, positions, balances, equity))
    return contexts
