"""Checkpoints of the trading kernel: every account exported and imported exactly, and the
manual controls (halt, resume, flatten, close) on real candles, in memory."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest

from tests.support.memory_audit import MemoryAudit
from tests.support.restart_replay import real_candles
from triplegain_core.config import Settings
from triplegain_core.execution.control import ControlAction, ControlCommand, halted_by
from triplegain_core.execution.kernel import KernelState, TradingKernel
from triplegain_core.execution.order_manager import OrderBookState, OrderManager
from triplegain_core.model.market import Asset, Candle, Side
from triplegain_core.model.orders import Order, OrderPurpose, OrderType
from triplegain_core.portfolio.balances import Portfolio
from triplegain_core.risk.rules import RiskAgent, RiskReason, RiskState

SETTINGS = Settings(symbols=("XRP/USDT",))
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
TRAILS = ("signals", "intents", "checks", "orders", "order_events", "fills", "positions", "position_events",
          "snapshots")


@pytest.fixture
def candles(shared_data) -> list[Candle]:
    return real_candles(shared_data)


def test_a_kernel_restored_at_random_points_writes_the_trail_of_one_that_never_stopped(candles: list[Candle]) -> None:
    whole = MemoryAudit()
    TradingKernel(SETTINGS, whole).on_candles(candles)
    restored = MemoryAudit()
    kernel = TradingKernel(SETTINGS, restored)
    done, open_at_cuts = 0, 0
    for cut in [*sorted(random.Random(3).sample(range(50, len(candles)), 10)), len(candles)]:
        kernel.on_candles(candles[done:cut])
        saved = KernelState.model_validate_json(kernel.export_state().model_dump_json())
        open_at_cuts += sum(len(account.positions) for account in saved.accounts)
        kernel = TradingKernel(SETTINGS, restored)
        assert kernel.import_state(saved) == []
        kernel.warm({"XRP/USDT": candles[:cut]})
        done = cut

    assert open_at_cuts > 0 and len(whole.positions) > 50
    for trail in TRAILS:
        assert getattr(restored, trail) == getattr(whole, trail), trail


def test_only_the_accounts_changed_since_the_last_export_are_exported(candles: list[Candle]) -> None:
    kernel = TradingKernel(SETTINGS, MemoryAudit())
    kernel.on_candles(candles[:300])
    assert len(kernel.export_state(changed_only=True).accounts) == len(kernel.accounts)
    assert kernel.export_state(changed_only=True).accounts == ()
    assert len(kernel.export_state().accounts) == len(kernel.accounts)


def test_a_checkpoint_names_an_llm_account_it_is_opened_and_one_no_longer_traded_is_left_alone(
    candles: list[Candle],
) -> None:
    kernel = TradingKernel(SETTINGS, MemoryAudit())
    kernel.on_candles(candles[:300])
    base = kernel.export_state().accounts[0]
    saved = KernelState(accounts=(
        base.model_copy(update={"name": "llm:claude", "strategy": "llm:claude", "positions": ()}),
        base.model_copy(update={"name": "paper:retired", "positions": ()})))
    restored = TradingKernel(SETTINGS, MemoryAudit())
    assert restored.import_state(saved) == ["paper:retired"]
    assert restored.account("llm:claude").portfolio.balances == kernel.portfolio.balances


def test_the_portfolio_orders_and_risk_state_come_back_as_they_were() -> None:
    portfolio = Portfolio("a", {Asset.USDT: 900.0, Asset.XRP: 12.5})
    copy = Portfolio("a", {})
    copy.import_state(portfolio.export_state())
    assert copy.balances == portfolio.balances and copy.liabilities == portfolio.liabilities

    orders = OrderManager("a")
    resting = Order(order_id="o1", account="a", time=NOW, symbol="XRP/USDT", side=Side.BUY, quantity=2.0,
                    purpose=OrderPurpose.ENTRY, check_id="c", position_id="p", order_type=OrderType.LIMIT,
                    limit_price=0.4)
    orders.submit(resting)
    orders.drain_events()
    state = OrderBookState.model_validate_json(orders.export_state().model_dump_json())
    restored = OrderManager("a")
    restored.import_state(state)
    assert restored.open_orders() == orders.open_orders()
    restored.cancel("o1", NOW, "halt")
    assert [e.seq for e in restored.history("o1")] == [0, 1, 2]  # the history continues, not restarts

    risk = RiskAgent()
    risk.observe_equity(NOW, 1000.0)
    risk.observe_equity(NOW, 880.0)
    for _ in range(5):
        risk.record_trade_result(NOW, -1.0)
    again = RiskAgent()
    again.import_state(RiskState.model_validate_json(risk.export_state().model_dump_json()))
    assert again.export_state() == risk.export_state()
    assert again.export_state().day == date(2026, 1, 5)
    assert set(again.pause_reasons(NOW, 880.0)) == {RiskReason.DRAWDOWN_PAUSE, RiskReason.DAILY_LOSS_LIMIT,
                                                    RiskReason.LOSS_COOLDOWN}


def test_a_halted_kernel_refuses_every_entry_and_flatten_closes_every_position_by_hand(
    candles: list[Candle],
) -> None:
    audit = MemoryAudit()
    kernel = TradingKernel(SETTINGS, audit)
    at = 0
    while sum(a.positions.open_count for a in kernel.accounts) < 2:
        kernel.on_candles(candles[at:at + 1])
        at += 1
    assert kernel.halt(NOW, "halt by dana") and not kernel.halt(NOW, "again")
    checked = len(audit.checks)
    kernel.on_candles(candles[at:at + 200])
    entries = [c for c in audit.checks[checked:] if c.check_id.endswith(":entry-check")]
    assert entries and all(not c.approved and RiskReason.TRADING_HALTED in c.reasons for c in entries)

    open_ids = [p.position_id for a in kernel.accounts for p in a.positions.open_positions()]
    assert not kernel.close_position("nobody:123")
    closed = kernel.flatten()
    assert closed == open_ids
    assert all(audit.positions[i].exit_reason is OrderPurpose.MANUAL_CLOSE for i in closed)
    assert all(a.positions.open_count == 0 for a in kernel.accounts)
    assert kernel.resume() and not kernel.resume()


def test_the_halt_in_force_is_the_newest_halt_not_followed_by_a_resume() -> None:
    def command(control_id: int, action: ControlAction) -> ControlCommand:
        return ControlCommand(control_id=control_id, action=action, operator="dana", created_at=NOW,
                              position_id="p" if action is ControlAction.CLOSE else None)

    halt, resume, close = ControlAction.HALT, ControlAction.RESUME, ControlAction.CLOSE
    assert halted_by([]) is None
    assert halted_by([command(1, halt), command(2, close)]) == command(1, halt)
    assert halted_by([command(1, halt), command(2, resume)]) is None
    assert halted_by([command(1, halt), command(2, resume), command(3, halt)]) == command(3, halt)
    flatten = ControlCommand(control_id=4, action=halt, flatten=True, cancel_orders=True, operator="dana",
                             reason="exchange down", created_at=NOW)
    assert flatten.describe() == "halt (cancel, flatten) by dana: exchange down"
