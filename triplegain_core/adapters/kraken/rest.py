"""The exchange's public REST market data through ccxt: an adapter, like the storage adapters.

ccxt is a client library (as psycopg is for PostgreSQL), so both edges (the streamer's gap
repair and Dagster's history backfill) use this one adapter rather than each wrapping ccxt.
It turns ccxt's dictionaries into :class:`Trade` objects at once, pages through the trade
history with Kraken's own cursor, and retries rate limits and transient errors with an
exponential backoff.

Kraken's ``Trades`` cursor: ``since`` is exclusive and ``result.last`` is a nanosecond cursor.
ccxt's ``fetch_trades(since=ms)`` sends whole *seconds* and filters the page by milliseconds,
which can neither page exactly nor keep the microseconds of a trade; so the cursor is sent
through ``params={"since": ...}`` and read back from the raw response, and each trade's time
comes from its raw row (seconds with up to 6 decimals), not from ccxt's millisecond field.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import ccxt
import ccxt.async_support as ccxt_async
from pydantic import BaseModel, ConfigDict, Field, field_validator

from triplegain_core.model.market import Side, Trade

log = logging.getLogger(__name__)

SUPPORTED_EXCHANGES = ("kraken",)
NS_PER_US = 1000
_T = TypeVar("_T")


class ExchangeRestError(RuntimeError):
    """A REST call failed for good: retries exhausted, or an error that no retry can fix."""


class ExchangeRestConfig(BaseModel):
    """Where and how fast to call the exchange. Keys are named by environment variable only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exchange_id: str = "kraken"
    base_url: str | None = Field(
        default=None, description="Replaces the exchange's REST host (e.g. the replay stand-in)."
    )
    rate_limit_ms: int | None = Field(
        default=None, ge=0, description="ccxt's minimum spacing of calls; unset: ccxt's default."
    )
    page_size: int = Field(default=1000, ge=1, le=1000)
    max_retries: int = Field(default=6, ge=0)
    backoff_s: float = Field(default=1.0, ge=0.0)
    max_backoff_s: float = Field(default=60.0, ge=0.0)
    timeout_ms: int = Field(default=10_000, ge=1)
    api_key_env: str = "TRIPLEGAIN_EXCHANGE_API_KEY"
    api_secret_env: str = "TRIPLEGAIN_EXCHANGE_API_SECRET"

    @field_validator("exchange_id")
    @classmethod
    def _supported(cls, exchange_id: str) -> str:
        if exchange_id not in SUPPORTED_EXCHANGES:
            raise ValueError(
                f"exchange {exchange_id!r} has no trade-history cursor here yet;"
                f" supported: {list(SUPPORTED_EXCHANGES)}"
            )
        return exchange_id


@dataclass(frozen=True, slots=True)
class TradePage:
    """One page of the trade history: its trades (time order) and the cursor after them."""

    trades: tuple[Trade, ...]
    cursor_ns: int


@dataclass(slots=True)
class RestCallStats:
    """What the adapter did: calls answered, retries and the errors behind them."""

    calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    unavailable: int = 0
    rejected_rows: int = 0


def _trade(symbol: str, row: dict[str, Any]) -> Trade:
    """A ccxt trade of Kraken's public ``Trades`` as a :class:`Trade` (time from the raw row)."""
    raw_time = row["info"][2]
    ts_us = int((Decimal(str(raw_time)) * 1_000_000).to_integral_value())
    return Trade(
        symbol=symbol,
        trade_id=int(row["id"]),
        ts_us=ts_us,
        price=float(row["price"]),
        qty=float(row["amount"]),
        side=Side(row["side"]),
        ord_type="limit" if row.get("type") == "limit" else "market",
    )


class RestMarketData:
    """Public market data of one exchange over REST (async; ``async with`` closes the session)."""

    def __init__(self, config: ExchangeRestConfig) -> None:
        self.config = config
        self.stats = RestCallStats()
        options: dict[str, Any] = {
            "enableRateLimit": True,
            "enableLastJsonResponse": True,
            "timeout": config.timeout_ms,
        }
        if config.rate_limit_ms is not None:
            options["rateLimit"] = config.rate_limit_ms
        key, secret = os.environ.get(config.api_key_env), os.environ.get(config.api_secret_env)
        if key and secret:  # public data needs none; never logged, never stored
            options["apiKey"], options["secret"] = key, secret
        self._exchange = getattr(ccxt_async, config.exchange_id)(options)
        if config.base_url:
            api = dict(self._exchange.urls["api"])
            api["public"] = api["private"] = config.base_url.rstrip("/")
            self._exchange.urls["api"] = api
        self._markets_loaded = False

    async def __aenter__(self) -> RestMarketData:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close ccxt's HTTP session."""
        await self._exchange.close()

    async def _call(self, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``call``, retrying rate limits and transient failures with exponential backoff."""
        attempt = 0
        while True:
            try:
                result = await call()
                self.stats.calls += 1
                return result
            except ccxt.NetworkError as exc:  # rate limits, 5xx, timeouts: all transient
                if isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
                    self.stats.rate_limited += 1
                else:
                    self.stats.unavailable += 1
                if attempt >= self.config.max_retries:
                    raise ExchangeRestError(
                        f"{what}: still failing after {attempt} retries: {exc}") from exc
                delay = min(self.config.backoff_s * 2**attempt, self.config.max_backoff_s)
                log.warning("%s: %s; retry %d in %.2fs", what, type(exc).__name__, attempt + 1,
                            delay)
                self.stats.retries += 1
                attempt += 1
                await asyncio.sleep(delay)
            except ccxt.BaseError as exc:
                raise ExchangeRestError(f"{what}: {exc}") from exc
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                # ccxt could not parse the answer: asking again would get the same page.
                raise ExchangeRestError(f"{what}: malformed answer ({type(exc).__name__}: "
                                        f"{exc})") from exc

    async def load_markets(self) -> None:
        """Load the exchange's markets once (ccxt needs them to map symbols to pair ids)."""
        if not self._markets_loaded:
            await self._call("load_markets", self._exchange.load_markets)
            self._markets_loaded = True

    async def trades_page(self, symbol: str, cursor_ns: int) -> TradePage:
        """The trades strictly after ``cursor_ns`` (one page) and the cursor that follows them."""
        await self.load_markets()
        params = {"since": str(cursor_ns), "count": self.config.page_size}
        rows = await self._call(
            f"fetch_trades {symbol} since {cursor_ns}",
            lambda: self._exchange.fetch_trades(symbol, params=params),
        )
        response = self._exchange.last_json_response or {}
        last = (response.get("result") or {}).get("last")
        parsed = []
        for row in rows:
            try:
                parsed.append(_trade(symbol, row))
            except (KeyError, IndexError, TypeError, ValueError, InvalidOperation) as exc:
                self.stats.rejected_rows += 1
                log.warning("%s: malformed trade row rejected (%s): %r", symbol,
                            type(exc).__name__, row.get("info"))
        trades = tuple(sorted(parsed, key=lambda t: (t.ts_us, t.trade_id)))
        next_cursor = int(last) if last is not None else cursor_ns
        if trades:
            next_cursor = max(next_cursor, trades[-1].ts_us * NS_PER_US)
        return TradePage(trades, next_cursor)

    async def trade_pages(
        self, symbol: str, from_us: int, to_us: int
    ) -> AsyncIterator[TradePage]:
        """Pages of every trade in ``[from_us, to_us)``, oldest first, trimmed to the window.

        Stops at the first trade at or past ``to_us``, at an empty page, or when the cursor
        stops moving (the present has been reached).
        """
        if to_us <= from_us:
            return
        cursor = from_us * NS_PER_US - 1  # ``since`` is exclusive
        while True:
            page = await self.trades_page(symbol, cursor)
            inside = tuple(t for t in page.trades if from_us <= t.ts_us < to_us)
            yield TradePage(inside, page.cursor_ns)
            if (not page.trades or page.trades[-1].ts_us >= to_us
                    or page.cursor_ns <= cursor):
                return
            cursor = page.cursor_ns
