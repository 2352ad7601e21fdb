"""The Redis hot-state contract between the streamer, the executor and Dagster (version 1).

Keys and streams, all prefixed ``tg:v1:``; values are JSON objects:

==================================  ======================================================  =====
key                                 value                                                   TTL
==================================  ======================================================  =====
``price:{symbol}``                  ``{"symbol", "price", "ts_us"}`` last trade price       60 s
``candle:1m:{symbol}``              the forming 1m candle (fields of ``Candle``)            120 s
``stream:candles:1m``               stream, one entry per closed 1m candle, field ``c``     maxlen ~100k
``streamer:heartbeat``              ``{"ts_us", "trades", "candles"}``                      15 s
==================================  ======================================================  =====

The TTLs make stale state disappear: an executor that finds no price does not trade.
A change to any key, field or format bumps the version in the prefix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import redis

from triplegain_core.market import Candle

CONTRACT_VERSION = 1
PREFIX = f"tg:v{CONTRACT_VERSION}:"
PRICE_TTL_S = 60
CANDLE_TTL_S = 120
HEARTBEAT_TTL_S = 15
CLOSED_CANDLES_STREAM = PREFIX + "stream:candles:1m"
CLOSED_CANDLES_MAXLEN = 100_000


@dataclass(frozen=True, slots=True)
class LastPrice:
    symbol: str
    price: float
    ts_us: int


def price_key(symbol: str) -> str:
    return f"{PREFIX}price:{symbol}"


def forming_candle_key(symbol: str) -> str:
    return f"{PREFIX}candle:1m:{symbol}"


HEARTBEAT_KEY = PREFIX + "streamer:heartbeat"


class HotStatePublisher:
    """The streamer's side: publishes prices, forming and closed candles, its heartbeat."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def publish(
        self,
        prices: Sequence[LastPrice],
        forming: Sequence[Candle],
        closed: Sequence[Candle],
        heartbeat: dict[str, int],
    ) -> None:
        """Publish one batch in a single round trip."""
        pipe = self._client.pipeline(transaction=False)
        for last in prices:
            pipe.set(price_key(last.symbol), json.dumps(asdict(last)), ex=PRICE_TTL_S)
        for candle in forming:
            pipe.set(forming_candle_key(candle.symbol), json.dumps(asdict(candle)), ex=CANDLE_TTL_S)
        for candle in closed:
            pipe.xadd(
                CLOSED_CANDLES_STREAM,
                {"c": json.dumps(asdict(candle))},
                maxlen=CLOSED_CANDLES_MAXLEN,
                approximate=True,
            )
        pipe.set(HEARTBEAT_KEY, json.dumps(heartbeat), ex=HEARTBEAT_TTL_S)
        pipe.execute()


class HotStateReader:
    """The executor's and Dagster's side: reads what the streamer published."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def last_prices(self, symbols: Sequence[str]) -> dict[str, LastPrice]:
        """Latest trade price per symbol; symbols with no fresh price are absent."""
        values = self._client.mget([price_key(s) for s in symbols])
        found = {}
        for raw in values:
            if raw is not None:
                last = LastPrice(**json.loads(raw))
                found[last.symbol] = last
        return found

    def forming_candle(self, symbol: str) -> Candle | None:
        raw = self._client.get(forming_candle_key(symbol))
        return None if raw is None else Candle(**json.loads(raw))

    def closed_candles_after(self, last_id: str, count: int = 1000) -> tuple[str, list[Candle]]:
        """Closed candles published after stream id ``last_id`` ("0" for all), oldest first."""
        reply = self._client.xread({CLOSED_CANDLES_STREAM: last_id}, count=count)
        if not reply:
            return last_id, []
        entries = reply[0][1]
        candles = [Candle(**json.loads(fields[b"c"])) for _, fields in entries]
        newest = entries[-1][0]
        return newest.decode() if isinstance(newest, bytes) else newest, candles

    def heartbeat(self) -> dict[str, int] | None:
        raw = self._client.get(HEARTBEAT_KEY)
        return None if raw is None else json.loads(raw)
