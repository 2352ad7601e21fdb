"""The kill switch and manual control: `triplegain halt [--cancel] [--flatten]`, `resume` and
`close POSITION_ID` recorded in PostgreSQL and applied by the trading loop within one cycle, on
real candles (the XRP/USDT candles of ``../shared/data``)."""

from __future__ import annotations

import time

import psycopg
import pytest
import redis

from streamer.cli.main import main
from streamer.executor.loop import TradingLoop
from tests.support.restart_replay import publish_closed, real_candles
from triplegain_core.config import Settings
from triplegain_core.contracts.hot_state import HotStateReader
from triplegain_core.execution.control import ControlAction
from triplegain_core.model.market import Candle, Side
from triplegain_core.model.orders import Order, OrderPurpose, OrderState, OrderType
from triplegain_core.risk.rules import RiskReason
from triplegain_core.storage.checkpoints import CheckpointStore
from triplegain_core.storage.control_store import ControlStore, ControlWatch
from triplegain_core.storage.trading_store import TradingStore

SETTINGS = Settings(symbols=("XRP/USDT",))


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, redis_url: str) -> None:
    """The CLI pointed at the test's servers, commands given by 'dana'."""
    monkeypatch.setenv("TRIPLEGAIN_DATABASE_URL", database_url)
    monkeypatch.setenv("TRIPLEGAIN_REDIS_URL", redis_url)
    monkeypatch.setenv("TRIPLEGAIN_OPERATOR", "dana")
    monkeypatch.delenv("TRIPLEGAIN_CONFIG", raising=False)


@pytest.fixture
def candles(shared_data) -> list[Candle]:
    return real_candles(shared_data)


def controlled_loop(client: redis.Redis, conn: psycopg.Connection) -> TradingLoop:
    """The loop as `triplegain execute` builds it, reading the control commands every cycle."""
    trail = TradingStore(conn)
    return TradingLoop(SETTINGS, HotStateReader(client), trail, start_stream_id="0",
                       checkpoints=CheckpointStore(conn, SETTINGS.account, trail.transactions),
                       controls=ControlStore(conn))


def run_until_open(loop: TradingLoop, client: redis.Redis, candles: list[Candle], start: int = 0,
                   wanted: int = 2) -> int:
    """Feed candles from ``start`` until ``wanted`` positions are open; the next candle's index."""
    for index in range(start, len(candles)):
        publish_closed(client, candles[index:index + 1])
        loop.cycle()
        if sum(a.positions.open_count for a in loop.kernel.accounts) >= wanted:
            return index + 1
    raise AssertionError("the real candles never opened enough positions")


def feed(loop: TradingLoop, client: redis.Redis, candles: list[Candle]) -> None:
    publish_closed(client, candles)
    while loop.cycle():
        pass


def entry_checks_after(conn: psycopg.Connection, after: object) -> list[tuple[bool, list[str]]]:
    return conn.execute("SELECT approved, reasons FROM risk_checks WHERE check_id LIKE '%%:entry-check'"
                        " AND time > %s ORDER BY time", (after,)).fetchall()


@pytest.mark.usefixtures("cli_env")
def test_halt_refuses_every_entry_from_the_next_cycle_exits_go_on_and_resume_lifts_it(
    redis_client: redis.Redis, db: psycopg.Connection, candles: list[Candle], capsys: pytest.CaptureFixture[str],
) -> None:
    loop = controlled_loop(redis_client, db)
    assert not loop.restore()
    at = run_until_open(loop, redis_client, candles)
    assert main(["halt", "--reason", "exchange incident"]) == 0
    assert "halt by dana: exchange incident" in capsys.readouterr().out
    halted_at = loop.kernel.market.market_time
    feed(loop, redis_client, candles[at:at + 400])

    assert loop.kernel.entry_blocks.get(RiskReason.TRADING_HALTED) is not None
    checks = entry_checks_after(db, halted_at)
    assert checks and all(not approved and "trading_halted" in reasons for approved, reasons in checks)
    assert db.execute("SELECT count(*) FROM orders WHERE purpose = 'entry' AND time > %s",
                      (halted_at,)).fetchone()[0] == 0
    # Exits went on: the positions open at the halt were closed by their own rules.
    assert db.execute("SELECT count(*) FROM positions WHERE closed_at > %s", (halted_at,)).fetchone()[0] > 0

    # A restarted executor comes back halted: the halt is in PostgreSQL.
    restarted = controlled_loop(redis_client, db)
    assert restarted.restore()
    block = restarted.kernel.entry_blocks.get(RiskReason.TRADING_HALTED)
    assert block is not None and "exchange incident" in block.detail

    assert main(["resume", "--reason", "over"]) == 0
    assert "allowed again" in capsys.readouterr().out
    resumed_at = restarted.kernel.market.market_time
    feed(restarted, redis_client, candles[at + 400:])
    assert restarted.kernel.entry_blocks.reasons == ()
    assert any(approved for approved, _ in entry_checks_after(db, resumed_at))
    commands = ControlStore(db).after(0)
    assert [(c.action, c.operator, c.reason) for c in commands] == [
        (ControlAction.HALT, "dana", "exchange incident"), (ControlAction.RESUME, "dana", "over")]


@pytest.mark.usefixtures("cli_env")
def test_halt_flatten_closes_every_position_through_the_order_path_and_cancel_cancels_working_orders(
    redis_client: redis.Redis, db: psycopg.Connection, candles: list[Candle],
) -> None:
    loop = controlled_loop(redis_client, db)
    at = run_until_open(loop, redis_client, candles)
    held = {p.position_id: a.name for a in loop.kernel.accounts for p in a.positions.open_positions()}
    # A resting order (the accounts' own orders fill at once): the one --cancel must cancel.
    account = next(a for a in loop.kernel.accounts if a.positions.open_count)
    check_id = db.execute("SELECT check_id FROM risk_checks WHERE account = %s LIMIT 1", (account.name,)).fetchone()[0]
    resting = Order(order_id="resting-1", account=account.name, time=loop.kernel.market.market_time,
                    symbol="XRP/USDT", side=Side.BUY, quantity=1.0, purpose=OrderPurpose.ENTRY, check_id=check_id,
                    position_id=f"{account.name}:resting", order_type=OrderType.LIMIT, limit_price=0.01)
    account.orders.submit(resting)
    TradingStore(db).record_order(account.orders.get("resting-1"))

    assert main(["halt", "--cancel", "--flatten"]) == 0
    publish_closed(redis_client, candles[at:at + 1])
    loop.cycle()

    assert all(a.positions.open_count == 0 for a in loop.kernel.accounts)
    rows = db.execute("SELECT position_id, exit_reason FROM positions WHERE position_id = ANY(%s)",
                      (list(held),)).fetchall()
    assert sorted(rows) == sorted((position_id, "manual_close") for position_id in held)
    for position_id in held:
        order = db.execute("SELECT state, purpose, check_id FROM orders WHERE position_id = %s AND purpose"
                           " = 'manual_close'", (position_id,)).fetchone()
        assert order is not None and order[0] == OrderState.FILLED
        check = db.execute("SELECT approved, reasons FROM risk_checks WHERE check_id = %s", (order[2],)).fetchone()
        assert check == (True, ["exit_always_allowed"])
    assert TradingStore(db).order_states(account.name)["resting-1"] is OrderState.CANCELLED
    # The checkpoint of that cycle holds the flat accounts: a restart does not reopen anything.
    restarted = controlled_loop(redis_client, db)
    assert restarted.restore()
    assert all(a.positions.open_count == 0 for a in restarted.kernel.accounts)


@pytest.mark.usefixtures("cli_env")
def test_close_closes_one_position_and_an_unknown_id_is_a_one_line_mistake(
    redis_client: redis.Redis, db: psycopg.Connection, candles: list[Candle], capsys: pytest.CaptureFixture[str],
) -> None:
    loop = controlled_loop(redis_client, db)
    at = run_until_open(loop, redis_client, candles)
    open_ids = [p.position_id for a in loop.kernel.accounts for p in a.positions.open_positions()]
    target, others = open_ids[0], open_ids[1:]

    assert main(["close", target[:-1] + "x"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"no open position has this id; did you mean {target!r}?" in error
    assert main(["close", target, "--reason", "by hand"]) == 0
    publish_closed(redis_client, candles[at:at + 1])
    loop.cycle()

    assert db.execute("SELECT status, exit_reason FROM positions WHERE position_id = %s",
                      (target,)).fetchone() == ("closed", "manual_close")
    # The others were left to their own rules.
    assert not any(_closed_by_hand(db, position_id) for position_id in others)
    assert main(["close", target]) == 2
    assert "already closed" in capsys.readouterr().err
    assert loop.kernel.entry_blocks.reasons == ()  # a close halts nothing


def _closed_by_hand(conn: psycopg.Connection, position_id: str) -> bool:
    row = conn.execute("SELECT exit_reason FROM positions WHERE position_id = %s", (position_id,)).fetchone()
    return row is not None and row[0] == "manual_close"


def test_the_watch_sees_a_command_as_soon_as_it_is_recorded(database_url: str, db: psycopg.Connection) -> None:
    with ControlWatch(database_url, wake_s=0.2) as watch:
        command = ControlStore(db).record(ControlAction.HALT, "dana", "now")
        deadline = time.monotonic() + 10
        while watch.newest < command.control_id:
            assert time.monotonic() < deadline, "the watch never saw the command"
            time.sleep(0.01)
    assert watch.newest == command.control_id
