"""BENCH server_outage_lost_rows: trades and candles lost (or stored twice) across a 30 s
PostgreSQL outage and then a 30 s Redis outage while the real XRP/ETH trades are replayed
through the exchange stand-in and the streamer (about 80 s).

The servers are embedded ones this benchmark starts itself. Counted: trades of the source file
not stored, trades stored more than once, 1m/5m candles missing or different from an
uninterrupted replay's, and 1m candles closed after the Redis outage began but never published
on the closed-candle stream (the last, possibly still forming at the end, excepted).
"""

from __future__ import annotations

from pathlib import Path

import redis

from tests.support.outage import (
    Outage,
    OwnServers,
    closed_candles_published,
    last_closed_candle_published,
    replay_through_outages,
    stored_market,
    uninterrupted_candles,
)
from triplegain_core.marketdata.sources import trades_from_file
from triplegain_core.storage.migrate import migrate

SYMBOL = "XRP/USDT"
SPEED = 2_700.0  # the 2.5 days of trades in about 80 s
OUTAGE_S = 30.0


def test_server_outage_lost_rows(shared_data: Path, tmp_path: Path) -> None:
    trades = list(trades_from_file(shared_data / "binance_xrp-eth_trades.parquet", SYMBOL))
    reference = uninterrupted_candles(trades, SYMBOL, tmp_path / "reference")
    servers = OwnServers(tmp_path / "servers")
    try:
        migrate(servers.database_url)
        last_seen: list[int] = []
        outages = [
            Outage(5.0, OUTAGE_S, servers.stop_postgres, servers.start_postgres),
            Outage(40.0, OUTAGE_S,
                   lambda: servers.stop_redis(lambda client: last_seen.append(last_closed_candle_published(client))),
                   servers.start_redis),
        ]
        stats = replay_through_outages(servers, trades, SYMBOL, tmp_path / "data", SPEED, outages)
        trade_rows, candles = stored_market(servers, SYMBOL)
        published = closed_candles_published(redis.Redis.from_url(servers.redis_url))
    finally:
        servers.close()
    stored_ids: dict[int, int] = dict(trade_rows)
    missing_trades = sum(1 for t in trades if t.trade_id not in stored_ids)
    twice = sum(count - 1 for count in stored_ids.values())
    wrong_candles = sum(1 for key, value in reference.items() if candles.get(key) != value) \
        + len(candles.keys() - reference.keys())
    due = {open_us for tf, open_us in candles if tf == "1m" and open_us > last_seen[0]}
    unpublished = len(due - published - {max(due)})
    lost = missing_trades + twice + wrong_candles + unpublished
    print(f"\n  {len(trades)} trades replayed ({stats.trades} received), {len(reference)} candles;"
          f" missing trades {missing_trades}, stored twice {twice}, candles missing or wrong"
          f" {wrong_candles}, closed candles not published {unpublished}")
    print(f"BENCH server_outage_lost_rows {lost} count")
    assert lost == 0
