"""PostgreSQL storage and the Redis hot-state contract, against real servers."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from triplegain_core.hot_state import HotStatePublisher, HotStateReader, LastPrice, price_key
from triplegain_core.market import US_PER_MINUTE, Asset, Candle, Side, Trade, datetime_to_us
from triplegain_core.orders import Fill, Order, OrderPurpose
from triplegain_core.portfolio import PortfolioSnapshot
from triplegain_core.positions import Position, PositionStatus
from triplegain_core.risk import RiskCheck, RiskReason
from triplegain_core.signals import Direction, TechnicalSignal
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.migrate import available_migrations, migrate
from triplegain_core.storage.trading_store import TradingStore

T0 = datetime_to_us(datetime(2026, 1, 5, tzinfo=UTC))


def _candle(minute: int, close: float = 101.0, symbol: str = "BTC/USDT") -> Candle:
    return Candle(symbol, "1m", T0 + minute * US_PER_MINUTE, 100.0, 102.0, 99.0, close, 1.5, 3)


def _trade(trade_id: int, symbol: str = "XRP/USDT") -> Trade:
    return Trade(symbol, trade_id, T0 + trade_id * 1_000_000, 0.5 + trade_id / 1000, 10.0, Side.BUY)


def test_migrations_apply_once_and_record_versions(database_url: str) -> None:
    assert migrate(database_url) == []  # the fixture already migrated: nothing left to apply
    with psycopg.connect(database_url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [m.version for m in available_migrations()]


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


def test_trading_audit_trail_round_trip(db: psycopg.Connection) -> None:
    store = TradingStore(db)
    when = datetime(2026, 1, 5, 1, tzinfo=UTC)
    signal = TechnicalSignal(signal_id="s1", strategy="t", symbol="XRP/USDT", timeframe="1m",
                             time=when, direction=Direction.LONG, strength=0.8, entry=0.5,
                             stop_loss=0.495, take_profit=0.51, indicators={"rsi_14": 55.0})
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


def test_hot_state_contract_round_trip(redis_client) -> None:
    publisher, reader = HotStatePublisher(redis_client), HotStateReader(redis_client)
    first, second = _candle(0), _candle(1, close=100.0)
    publisher.publish([LastPrice("BTC/USDT", 100.0, T0 + 61_000_000)], [_candle(2)],
                      [first], {"ts_us": T0, "trades": 3, "candles": 1})
    last_id, candles = reader.closed_candles_after("0")
    assert candles == [first]
    publisher.publish([], [], [second], {"ts_us": T0, "trades": 4, "candles": 2})
    _, newer = reader.closed_candles_after(last_id)
    assert newer == [second]
    assert reader.last_prices(["BTC/USDT", "XRP/USDT"]) == {
        "BTC/USDT": LastPrice("BTC/USDT", 100.0, T0 + 61_000_000)
    }
    assert reader.forming_candle("BTC/USDT") == _candle(2)
    assert 0 < redis_client.ttl(price_key("BTC/USDT")) <= 60
    assert reader.heartbeat()["trades"] == 4
