"""PostgreSQL storage against a real server: migrations, market data, the trading audit trail."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from triplegain_core.model.market import (
    TIMEFRAME_US,
    US_PER_MINUTE,
    Asset,
    Candle,
    Side,
    Trade,
    datetime_to_us,
    us_to_datetime,
)
from triplegain_core.model.orders import Fill, Order, OrderPurpose
from triplegain_core.model.quotes import BookSnapshot
from triplegain_core.model.signals import Direction, Signal, SignalAction
from triplegain_core.portfolio.balances import PortfolioSnapshot
from triplegain_core.portfolio.positions import Position, PositionStatus
from triplegain_core.risk.rules import RiskCheck, RiskReason
from triplegain_core.storage import migrate as migrate_module
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.migrate import available_migrations, migrate, timescaledb_enabled
from triplegain_core.storage.trading_store import TradingStore

T0 = datetime_to_us(datetime(2026, 1, 5, tzinfo=UTC))


def _candle(minute: int, close: float = 101.0, symbol: str = "BTC/USDT", timeframe: str = "1m"
            ) -> Candle:
    start = T0 + minute * TIMEFRAME_US[timeframe]
    return Candle(symbol, timeframe, start, 100.0, 102.0, 99.0, close, 1.5, 3)


def _book(second: int, symbol: str = "XRP/USDT", depth: int = 3) -> BookSnapshot:
    bids = tuple((0.5 - i / 1000, 10.0 + i) for i in range(depth))
    asks = tuple((0.501 + i / 1000, 5.0 + i) for i in range(depth - 1))  # a thin side
    return BookSnapshot(symbol, T0 + second * 1_000_000, depth, bids, asks)


def _trade(trade_id: int, symbol: str = "XRP/USDT") -> Trade:
    return Trade(symbol, trade_id, T0 + trade_id * 1_000_000, 0.5 + trade_id / 1000, 10.0, Side.BUY)


def test_migrations_apply_once_and_record_versions(database_url: str) -> None:
    assert migrate(database_url) == []  # the fixture already migrated: nothing left to apply
    with psycopg.connect(database_url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [m.version for m in available_migrations()]


def test_two_migrations_with_one_version_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "migrations").mkdir()
    for name in ("0001_initial.sql", "0003_mine.sql", "0003_theirs.sql"):
        (tmp_path / "migrations" / name).write_text("SELECT 1")
    monkeypatch.setattr(migrate_module.resources, "files", lambda package: tmp_path)
    with pytest.raises(RuntimeError, match="0003_mine / theirs"):
        available_migrations()


def test_candles_upsert_on_natural_key(db: psycopg.Connection) -> None:
    store = MarketStore(db)
    store.write_candles([_candle(m) for m in range(5)])
    store.write_candles([_candle(m) for m in range(5)])
    store.write_candles([_candle(4, close=100.5)])  # a later version of the same bucket wins
    frame = store.read_candles("BTC/USDT")
    assert len(frame) == 5
    assert frame["close"].tolist() == [101.0, 101.0, 101.0, 101.0, 100.5]
    assert frame["open_time"].iloc[0] == datetime(2026, 1, 5, tzinfo=UTC)


def test_trades_replayed_twice_leave_no_duplicates(db: psycopg.Connection) -> None:
    store = MarketStore(db)
    trades = [_trade(i) for i in range(1, 200)]
    store.write_trades(trades)
    store.write_trades(trades[50:] + trades[:10])
    assert store.count_rows("trades") == len(trades)
    stored = db.execute("SELECT trade_id, price FROM trades ORDER BY trade_id").fetchall()
    assert stored == [(t.trade_id, t.price) for t in trades]


def test_times_and_values_round_trip_exactly(db: psycopg.Connection) -> None:
    """Epoch microseconds cross the COPY as integers and come back to the microsecond."""
    stamps = [-1, 0, 1, 946_684_800_000_000 - 1, T0 + 123_457, 4_102_444_799_999_999, 2**52 + 1]
    trades = [Trade("XRP/BTC", i + 1, ts, 9.160642597063099e-06, 87.02276762, Side.SELL, "limit")
              for i, ts in enumerate(stamps)]
    candles = [Candle("XRP/BTC", "1m", ts - ts % US_PER_MINUTE, 0.1, 0.3, 0.1 + 1e-17, 0.2,
                      1 / 3, 7) for ts in stamps if ts != 1]  # 1 shares 0's minute
    store = MarketStore(db)
    assert store.write_batch(trades, candles) == len(trades) + len(candles)
    assert store.trades("XRP/BTC") == trades
    assert store.candles("XRP/BTC") == candles
    assert db.execute("SELECT min(ts) FROM trades").fetchone()[0] == us_to_datetime(-1)


def test_identical_candles_rewrite_nothing_and_a_new_version_replaces(
    db: psycopg.Connection,
) -> None:
    store = MarketStore(db)
    store.write_candles([_candle(m) for m in range(3)])
    versions = db.execute("SELECT xmin::text FROM candles ORDER BY open_time").fetchall()
    store.write_candles([_candle(m) for m in range(3)])  # a replay: no new row versions
    assert db.execute("SELECT xmin::text FROM candles ORDER BY open_time").fetchall() == versions
    store.write_candles([_candle(1, close=100.2)])
    after = db.execute("SELECT xmin::text FROM candles ORDER BY open_time").fetchall()
    assert [a == v for a, v in zip(after, versions, strict=True)] == [True, False, True]
    assert [c.close for c in store.candles("BTC/USDT")] == [101.0, 100.2, 101.0]


def test_a_failed_batch_stores_nothing_and_the_store_goes_on(db: psycopg.Connection) -> None:
    store = MarketStore(db)
    unwritable = BookSnapshot("XRP/USDT", T0, 2**40, ((0.5, 1.0),), ())  # depth beyond integer
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        store.write_batch([_trade(1)], [_candle(0)], [_book(0), unwritable])
    assert [store.count_rows(t) for t in ("trades", "candles", "book_snapshots")] == [0, 0, 0]
    assert store.write_batch([_trade(1)], [_candle(0)], [_book(0)]) == 3
    assert [store.count_rows(t) for t in ("trades", "candles", "book_snapshots")] == [1, 1, 1]


def test_book_snapshots_are_stored_once_and_read_back(db: psycopg.Connection) -> None:
    store = MarketStore(db)
    books = [_book(s, depth=1 + s % 4) for s in range(10)] + [_book(3, symbol="XRP/BTC")]
    store.write_book_snapshots(books)
    store.write_book_snapshots(books[5:] + books[:2])
    assert store.count_rows("book_snapshots") == len(books)
    assert store.book_snapshots("XRP/USDT") == books[:10]
    assert store.book_snapshots("XRP/USDT", start=us_to_datetime(T0 + 2_000_000),
                                end=us_to_datetime(T0 + 5_000_000)) == books[2:5]
    best_bid = db.execute("SELECT bid_price[1], cardinality(ask_qty) FROM book_snapshots"
                          " WHERE symbol = 'XRP/BTC'").fetchone()
    assert best_bid == (0.5, 2)
    with pytest.raises(ValueError, match="not a market-data table"):
        store.count_rows("orders")


def test_read_api_for_assets_and_gap_repair(db: psycopg.Connection) -> None:
    store = MarketStore(db)
    candles = [_candle(m, symbol=s, timeframe=tf) for s in ("BTC/USDT", "XRP/USDT")
               for tf in ("1m", "5m", "1h") for m in range(6)]
    trades = [_trade(i, "XRP/USDT") for i in range(1, 50)] + [_trade(i, "XRP/BTC") for i in (3, 7)]
    # Same time, higher id: the later trade of the two.
    trades.append(Trade("XRP/BTC", 8, trades[-1].ts_us, 0.1, 1.0, Side.BUY))
    store.write_batch(trades, candles)

    start, end = us_to_datetime(T0 + 5 * 60_000_000), us_to_datetime(T0 + 20 * 60_000_000)
    assert store.candles("XRP/USDT", "5m", start, end) == [
        _candle(m, symbol="XRP/USDT", timeframe="5m") for m in (1, 2, 3)]  # [start, end)
    frame = store.read_candles("XRP/USDT", "5m", start, end)
    assert frame["open_time"].tolist() == [us_to_datetime(c.open_time_us) for c in
                                           store.candles("XRP/USDT", "5m", start, end)]
    assert store.last_trades(["XRP/USDT", "XRP/BTC", "BTC/USDT"]) == {
        "XRP/USDT": trades[48], "XRP/BTC": trades[-1]}
    assert store.last_candles(["BTC/USDT", "XRP/BTC"], "1h") == {
        "BTC/USDT": _candle(5, timeframe="1h")}
    assert store.last_candles(["XRP/USDT"]) == {"XRP/USDT": _candle(5, symbol="XRP/USDT")}


def test_trading_audit_trail_round_trip(db: psycopg.Connection) -> None:
    store = TradingStore(db)
    when = datetime(2026, 1, 5, 1, tzinfo=UTC)
    signal = Signal(signal_id="s1", strategy="t", strategy_version="1", symbol="XRP/USDT", timeframe="1m",
                    time=when, action=SignalAction.LONG, strength=0.8, entry=0.5,
                    stop_loss=0.495, take_profit=0.51, reason="test", indicators={"rsi_14": 55.0})
    check = RiskCheck(check_id="c1", account="paper", time=when, symbol="XRP/USDT",
                      signal_id="s1", position_id="p1", approved=True,
                      reasons=(RiskReason.APPROVED,), quantity=100.0, notional_usdt=50.0,
                      equity_usdt=1250.0, risk_usdt=0.5)
    order = Order(order_id="o1", account="paper", time=when, symbol="XRP/USDT", side=Side.BUY,
                  quantity=100.0, purpose=OrderPurpose.ENTRY, check_id="c1", position_id="p1")
    fill = Fill(fill_id="f1", order_id="o1", account="paper", time=when, symbol="XRP/USDT",
                side=Side.BUY, quantity=100.0, price=0.50025, fee=0.050025, fee_asset=Asset.USDT)
    position = Position(position_id="p1", account="paper", symbol="XRP/USDT",
                        direction=Direction.LONG, quantity=100.0, entry_price=0.50025,
                        stop_loss=0.495, take_profit=0.51, opened_at=when,
                        entry_notional_usdt=50.025, equity_at_entry_usdt=1250.0, fees=0.050025)
    for _ in range(2):  # a retry writes nothing twice
        store.record_signal(signal)
        store.record_risk_check(check)
        store.record_order(order)
        store.record_fill(fill)
        store.record_position(position, "opened")
    # A CLOSE has no direction or levels: the signals table keeps entries only.
    close = signal.model_copy(update={"action": SignalAction.CLOSE, "stop_loss": None, "take_profit": None})
    with pytest.raises(ValueError, match="entries only"):
        store.record_signal(close)
    closed = position.model_copy(update={"status": PositionStatus.CLOSED,
                                         "closed_at": datetime(2026, 1, 5, 2, tzinfo=UTC),
                                         "exit_price": 0.51, "realized_pnl": 0.9,
                                         "exit_reason": OrderPurpose.TAKE_PROFIT})
    store.record_position(closed, "closed")
    store.record_snapshot(PortfolioSnapshot(account="paper", time=when,
                                            balances={Asset.USDT: 950.0, Asset.XRP: 600.0,
                                                      Asset.BTC: 0.0},
                                            prices={"XRP/USDT": 0.5}, equity_usdt=1250.0))

    assert store.activity_counts("paper") == {"signals": 1, "approved_checks": 1,
                                              "rejected_checks": 0, "orders": 1, "fills": 1}
    assert store.fills_with_checks("paper") == [("f1", "o1", True)]
    assert store.positions("paper") == [closed]
    events = db.execute("SELECT event FROM position_events ORDER BY time").fetchall()
    assert events == [("opened",), ("closed",)]
    assert store.snapshots("paper")["equity_usdt"].tolist() == [1250.0]
    assert store.fees_paid("paper") == {"USDT": pytest.approx(0.050025)}


def test_order_without_risk_check_is_refused_by_the_schema(db: psycopg.Connection) -> None:
    order = Order(order_id="o1", account="paper", time=datetime(2026, 1, 5, tzinfo=UTC),
                  symbol="XRP/USDT", side=Side.BUY, quantity=1.0, purpose=OrderPurpose.ENTRY,
                  check_id="no-such-check", position_id="p1")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        TradingStore(db).record_order(order)


# --- TimescaleDB: the machine has no extension, so what can honestly be checked here is that
# the conditional path is skipped cleanly, that PostgreSQL's own parser accepts every statement
# of the TimescaleDB branches, and that they name tables and columns that exist. Whether the
# functions' signatures and the `timescaledb.*` options are right, and how hypertables,
# compression and retention then behave, needs a server with the extension.

def _timescale_statements() -> list[tuple[str, str]]:
    """(migration, statement) for each statement inside a migration's TimescaleDB branch."""
    found = []
    for migration in available_migrations():
        if "timescaledb" not in migration.sql or " THEN" not in migration.sql:
            continue
        branch = migration.sql.split(" THEN", 1)[1].split("END IF;", 1)[0]
        code = "\n".join(line for line in branch.splitlines() if not line.strip().startswith("--"))
        found += [(migration.name, s.strip()) for s in code.split(";") if s.strip()]
    return found


def _check_syntax(db: psycopg.Connection, statement: str) -> None:
    # PL/pgSQL parses every statement of a block when it compiles it, taken branch or not.
    db.execute(f"DO $$ BEGIN IF false THEN {statement}; END IF; END $$")


def test_timescale_path_is_skipped_cleanly_on_plain_postgresql(
    database_url: str, db: psycopg.Connection
) -> None:
    assert not timescaledb_enabled(database_url)
    assert db.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%timescaledb%'"
                      ).fetchone()[0] == 0
    tables = dict(db.execute(
        "SELECT relname, relkind::text || coalesce(array_to_string(reloptions, ','), '')"
        " FROM pg_class WHERE relname IN ('candles', 'trades', 'book_snapshots')").fetchall())
    assert tables == {"candles": "r", "trades": "r", "book_snapshots": "r"}  # plain, no options
    versions = [row[0] for row in db.execute("SELECT version FROM schema_migrations")]
    assert 3 in versions


def test_timescale_statements_parse_and_name_real_tables_and_columns(
    db: psycopg.Connection,
) -> None:
    statements = _timescale_statements()
    kinds = {s.split("(")[0].split()[1] if s.startswith("PERFORM") else " ".join(s.split()[:2])
             for _, s in statements}
    assert kinds == {"CREATE EXTENSION", "create_hypertable", "ALTER TABLE",
                     "add_compression_policy", "add_retention_policy"}
    for _, statement in statements:
        _check_syntax(db, statement)
        with pytest.raises(psycopg.errors.SyntaxError):  # the check is real: a typo fails it
            _check_syntax(db, statement + ")")
        target = re.search(r"(?:ALTER TABLE (\w+)|\('(\w+)')", statement)
        if target is None:
            continue  # CREATE EXTENSION
        name = target.group(1) or target.group(2)
        assert db.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None, statement
        columns = {row[0] for row in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (name,))}
        options = dict(re.findall(r"timescaledb\.(compress_\w+) = '([^']*)'", statement))
        named = [c.split()[0] for v in options.values() for c in v.split(",")]
        named += re.findall(r"create_hypertable\('\w+', '(\w+)'", statement)
        assert set(named) <= columns, statement
        if options:  # compressed hypertables need their unique key in segmentby + orderby
            key = {row[0] for row in db.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
                " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                " WHERE i.indrelid = %s::regclass AND i.indisprimary", (name,))}
            assert key <= set(named), statement


def test_timescale_policies_cover_the_market_data_tables() -> None:
    """Every compressed hypertable has its compression policy; raw trades and book snapshots
    are dropped after a while, the candles (the source of truth, every timeframe) never."""
    targets: dict[str, set[str]] = {}
    for _, statement in _timescale_statements():
        match = re.match(
            r"(?:PERFORM (\w+)\('(\w+)'|ALTER TABLE (\w+) SET \(timescaledb\.compress)", statement)
        if match is not None:
            kind = match.group(1) or "compress"
            targets.setdefault(kind, set()).add(match.group(2) or match.group(3))
    market = {"candles", "trades", "book_snapshots"}
    assert market <= targets["create_hypertable"]
    assert targets["compress"] == targets["add_compression_policy"] == market
    assert targets["add_retention_policy"] == {"trades", "book_snapshots"}
