"""What a deliberation round tells the models, read from the system of record.

For each symbol: its latest 1m candles, the latest indicator features, the latest regime (when
the ``market_regime`` asset has run), and the deliberating account's open positions, recently
closed trades and balances. The streamer stores the forming candle too, so the newest stored
candle of a symbol is not used: a context ends at the latest candle another one followed, whose
close is the market time the decision is made at, which its expiry counts from.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg

from triplegain_core.llm.prompts import MarketContext
from triplegain_core.model.market import us_to_datetime
from triplegain_core.portfolio.positions import PositionStatus
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.portfolio_store import PortfolioStore
from triplegain_core.storage.trading_store import TradingStore

CONTEXT_CANDLES = 60
RECENT_TRADES = 10


def _latest_features(conn: psycopg.Connection, symbol: str) -> dict[str, float]:
    row = conn.execute(
        "SELECT features FROM indicator_features WHERE symbol = %s AND timeframe = '1m'"
        " ORDER BY open_time DESC LIMIT 1", (symbol,),
    ).fetchone()
    return {} if row is None else {name: float(value) for name, value in row[0].items()}


def _latest_regime(conn: psycopg.Connection, symbol: str) -> str | None:
    row = conn.execute(
        "SELECT regime, score, volatility FROM market_regimes WHERE symbol = %s"
        " ORDER BY time DESC, timeframe LIMIT 1", (symbol,),
    ).fetchone()
    return None if row is None else f"{row[0]} (score {row[1]:+.2f}, volatility {row[2]})"


def market_contexts(conn: psycopg.Connection, symbols: Sequence[str], account: str,
                    candles: int = CONTEXT_CANDLES) -> list[MarketContext]:
    """One context per symbol that has 1m candles stored, in ``symbols`` order."""
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
        start: datetime = us_to_datetime(forming.open_time_us - candles * 60_000_000)
        closed = store.candles(symbol, "1m", start, us_to_datetime(forming.open_time_us))
        if not closed:
            continue
        last = closed[-1]
        own = [p for p in positions if p.symbol == symbol]
        contexts.append(MarketContext(
            symbol=symbol,
            time=us_to_datetime(last.close_time_us),
            price=last.close,
            candles=tuple(closed),
            indicators=_latest_features(conn, symbol),
            regime=_latest_regime(conn, symbol),
            positions=tuple(p for p in own if p.status is PositionStatus.OPEN),
            recent_trades=tuple(p for p in own if p.status is PositionStatus.CLOSED)[-RECENT_TRADES:],
            balances=balances,
            equity_usdt=equity,
        ))
    return contexts
