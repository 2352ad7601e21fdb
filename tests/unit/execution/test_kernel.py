"""The trading kernel alone: market events in, orders, fills and positions out, in memory."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel

from tests.support.memory_audit import MemoryAudit
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.decisions.published import PublishedDecision, StrongSignal
from triplegain_core.execution.kernel import TradingKernel
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.model.market import US_PER_MINUTE, Asset, Candle, datetime_to_us, us_to_datetime
from triplegain_core.model.orders import OrderPurpose
from triplegain_core.model.quotes import BookSnapshot, LastPrice
from triplegain_core.model.signals import IntentAction, Signal, SignalAction, TradeIntent
from triplegain_core.portfolio.positions import Position, PositionStatus
from triplegain_core.risk.rules import RiskCheck, RiskReason
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.registry import LoadedStrategy

T0 = 1_780_000_000 * 1_000_000 // US_PER_MINUTE * US_PER_MINUTE
SETTINGS = Settings(symbols=("XRP/USDT",), strategies=StrategySettings(enabled=(), technical_agent=False))


def _walk(count: int = 60, seed: int = 5) -> list[Candle]:
    """A quiet random walk around 0.5 (too short for the TechnicalAgent, long enough for volatility)."""
    closes = 0.5 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.0005, count)))
    return [Candle("XRP/USDT", "1m", T0 + i * US_PER_MINUTE, c, c * 1.0002, c * 0.9998, c, 1000.0, 5)
            for i, c in enumerate(closes)]


def _candle(minute: int, low: float, high: float, close: float) -> Candle:
    return Candle("XRP/USDT", "1m", T0 + minute * US_PER_MINUTE, close, high, low, close, 1000.0, 5)


def _intent(last: Candle, intent_id: str) -> TradeIntent:
    price = last.close
    return TradeIntent(intent_id=intent_id, strategy="walk", tested=True, symbol="XRP/USDT",
                       time=us_to_datetime(last.close_time_us), action=IntentAction.LONG, entry=price,
                       stop_loss=price * 0.99, take_profit=price * 1.05)


def _decision(decision_id: str, account: str, price: float, at_us: int) -> PublishedDecision:
    decision = TradingDecision(action=Action.LONG, symbol="XRP/USDT", confidence=0.8, position_size_pct=10.0,
                               leverage=1.0, entry=price, stop_loss=price * 0.99, take_profit=price * 1.02,
                               invalidation="x", reasoning="y", model=account.removeprefix("llm:"))
    return PublishedDecision.make(decision_id, account, account.removeprefix("llm:"), decision, at_us, 900)


class _Lifecycle:
    """The decision intake's lifecycle side, recording what the kernel told it."""

    def __init__(self) -> None:
        self.refused: list[tuple[str, str]] = []
        self.outcomes: list[tuple[str, bool, str, frozenset[str]]] = []
        self.tracked: list[frozenset[str]] = []

    def refuse(self, decision: PublishedDecision, reason: str, at: datetime) -> None:
        self.refused.append((decision.decision_id, reason))

    def record_outcome(self, decision: PublishedDecision, check: RiskCheck, position_id: str,
                       open_positions: Collection[str], at: datetime) -> DecisionState:
        self.outcomes.append((decision.decision_id, check.approved, position_id, frozenset(open_positions)))
        return DecisionState.OPEN if position_id in open_positions else DecisionState.FAILED

    def track_closes(self, open_positions: Collection[str], at: datetime) -> list[str]:
        self.tracked.append(frozenset(open_positions))
        return []


def test_exits_fire_on_a_candle_range_and_only_when_it_reaches_them() -> None:
    audit = MemoryAudit()
    kernel = TradingKernel(SETTINGS, audit)
    walk = _walk()
    kernel.on_candles(walk)
    last = walk[-1]
    assert kernel.on_intent(_intent(last, "stopped")).approved
    (position,) = kernel.positions.open_positions()
    stop = position.stop_loss

    # A range above the stop, short of the take-profit and of the trailing stop's activation: nothing happens.
    kernel.on_candles([_candle(60, stop * 1.001, position.entry_price * 1.001, last.close)])
    assert [p.position_id for p in kernel.positions.open_positions()] == [position.position_id]
    assert kernel.positions.open_positions()[0].stop_loss == stop
    # A range whose low reaches the stop, though it closes above it: the stop fires at its level.
    kernel.on_candles([_candle(61, stop * 0.995, last.close, last.close)])
    assert kernel.positions.open_positions() == []
    closed = audit.positions[position.position_id]
    assert closed.status is PositionStatus.CLOSED and closed.exit_reason is OrderPurpose.STOP_LOSS
    assert closed.exit_price == pytest.approx(stop * (1 - SETTINGS.slippage))
    assert closed.closed_at == us_to_datetime(T0 + 62 * US_PER_MINUTE)
    assert [e.event for e in audit.position_events] == ["opened", "closed"]
    assert [f.order_id for f in audit.fills] == [f"{position.position_id}:entry", f"{position.position_id}:stop_loss"]
    assert audit.pipelines == 3  # each batch of candles writes its trail in one pipeline


def test_a_take_profit_in_the_range_closes_at_its_level() -> None:
    audit = MemoryAudit()
    kernel = TradingKernel(SETTINGS, audit)
    walk = _walk()
    kernel.on_candles(walk)
    assert kernel.on_intent(_intent(walk[-1], "won")).approved
    (position,) = kernel.positions.open_positions()
    kernel.on_candles([_candle(60, walk[-1].close, position.take_profit * 1.01, walk[-1].close)])
    closed = audit.positions[position.position_id]
    assert closed.exit_reason is OrderPurpose.TAKE_PROFIT and closed.realized_pnl > 0


def test_a_tick_beyond_the_stop_closes_the_position() -> None:
    audit = MemoryAudit()
    kernel = TradingKernel(SETTINGS, audit)
    walk = _walk()
    kernel.on_candles(walk)
    assert kernel.on_intent(_intent(walk[-1], "ticked")).approved
    (position,) = kernel.positions.open_positions()
    kernel.on_ticks({"XRP/USDT": LastPrice("XRP/USDT", position.stop_loss * 0.99, walk[-1].close_time_us - 1)})
    assert kernel.positions.open_positions() == [position]  # older than the candles: ignored
    kernel.on_ticks({"XRP/USDT": LastPrice("XRP/USDT", position.stop_loss * 0.99, walk[-1].close_time_us + 1)})
    assert audit.positions[position.position_id].exit_reason is OrderPurpose.STOP_LOSS


def test_an_account_is_valued_again_after_a_tick_or_a_fill_at_the_same_market_time() -> None:
    audit = MemoryAudit()
    kernel = TradingKernel(SETTINGS, audit)
    walk = _walk()
    kernel.on_candles(walk)
    kernel.record_snapshot()
    xrp = SETTINGS.starting_balances[Asset.XRP]
    assert audit.snapshots[-1].equity_usdt == kernel.portfolio.equity_usdt({"XRP/USDT": walk[-1].close})
    # A tick moves the price, not the market time: the next snapshot values the new price.
    kernel.on_ticks({"XRP/USDT": LastPrice("XRP/USDT", walk[-1].close * 1.001, walk[-1].close_time_us + 1)})
    kernel.record_snapshot()
    assert audit.snapshots[-1].equity_usdt == kernel.portfolio.equity_usdt({"XRP/USDT": walk[-1].close * 1.001})
    moved = audit.snapshots[-1].equity_usdt - audit.snapshots[-2].equity_usdt
    assert moved == pytest.approx(xrp * walk[-1].close * 0.001)
    # A fill at the same price changes the holdings: valued again, its fee and slippage gone.
    before = audit.snapshots[-1].equity_usdt
    price = walk[-1].close * 1.001
    intent = _intent(walk[-1], "valued").model_copy(
        update={"entry": price, "stop_loss": price * 0.99, "take_profit": price * 1.05})
    assert kernel.on_intent(intent).approved and kernel.positions.open_count == 1
    kernel.record_snapshot()
    assert audit.snapshots[-1].equity_usdt < before
    assert audit.snapshots[-1].equity_usdt == kernel.portfolio.equity_usdt({"XRP/USDT": walk[-1].close * 1.001})


def test_a_decision_for_a_non_llm_account_is_refused() -> None:
    audit, lifecycle = MemoryAudit(), _Lifecycle()
    kernel = TradingKernel(SETTINGS, audit, decisions=lifecycle)
    walk = _walk()
    kernel.on_candles(walk)
    kernel.on_decisions([_decision("d-base", "paper", walk[-1].close, walk[-1].close_time_us)])
    assert lifecycle.refused == [("d-base", "paper is not an LLM account")]
    assert lifecycle.outcomes == [] and lifecycle.tracked == []
    assert [a.name for a in kernel.accounts] == ["paper"]
    assert audit.intents == [] and audit.orders == {}


def test_an_llm_account_opens_on_its_first_decision() -> None:
    audit, lifecycle = MemoryAudit(), _Lifecycle()
    kernel = TradingKernel(SETTINGS, audit, decisions=lifecycle)
    walk = _walk()
    kernel.on_candles(walk)
    price, now_us = walk[-1].close, walk[-1].close_time_us
    kernel.on_decisions([_decision("d1", "llm:claude", price, now_us)])

    assert [a.name for a in kernel.accounts] == ["paper", "llm:claude"]
    claude = kernel.account("llm:claude")
    assert claude.strategy == "llm:claude" and claude.portfolio is not kernel.portfolio
    assert kernel.stats.accounts["llm:claude"] is claude.stats and claude.stats.fills == 1
    assert lifecycle.outcomes == [("d1", True, "llm:claude:d1", frozenset({"llm:claude:d1"}))]
    assert lifecycle.tracked == [frozenset({"llm:claude:d1"})]
    assert audit.intents[0][0] == "llm:claude" and audit.positions["llm:claude:d1"].status is PositionStatus.OPEN

    # Its second decision trades the same account; another model gets an account of its own.
    kernel.on_decisions([_decision("d2", "llm:claude", price, now_us), _decision("d3", "llm:gpt", price, now_us)])
    assert [a.name for a in kernel.accounts] == ["paper", "llm:claude", "llm:gpt"]
    assert [o[0] for o in lifecycle.outcomes] == ["d1", "d2", "d3"]


def test_decisions_need_the_markets_time() -> None:
    kernel = TradingKernel(SETTINGS, MemoryAudit(), decisions=_Lifecycle())
    with pytest.raises(RuntimeError, match="market's time"):
        kernel.on_decisions([])


def test_an_order_fills_against_the_books_the_kernel_was_handed() -> None:
    audit = MemoryAudit()
    kernel = TradingKernel(SETTINGS, audit)
    walk = _walk()
    kernel.on_candles(walk)
    last = walk[-1]
    price = last.close
    asks = ((price * 1.0001, 100.0), (price * 1.0003, 10_000.0))
    book = BookSnapshot("XRP/USDT", last.close_time_us + 100_000, 10, ((price * 0.9999, 500.0),), asks)
    kernel.on_books({"XRP/USDT": book})
    assert kernel.on_intent(_intent(last, "booked")).approved
    (fill,) = audit.fills
    expected = (100.0 * asks[0][0] + (fill.quantity - 100.0) * asks[1][0]) / fill.quantity
    assert fill.quantity > 100.0 and fill.price == pytest.approx(expected)

    closing = _intent(last, "booked").model_copy(update={"action": IntentAction.CLOSE, "stop_loss": None,
                                                       "take_profit": None})
    assert kernel.on_intent(closing).approved

    # A book far from the order's moment is not used: the fixed slippage prices it.
    stale = BookSnapshot("XRP/USDT", last.close_time_us - 60_000_000, 10, ((price * 0.9, 500.0),), asks)
    kernel.on_books({"XRP/USDT": stale})
    assert kernel.on_intent(_intent(last, "unbooked")).approved
    assert audit.fills[-1].price == pytest.approx(price * (1 + SETTINGS.slippage))


class _NoConfig(BaseModel):
    pass


def _long_while_flat(name: str) -> LoadedStrategy:
    """LONG on every new candle while it believes itself flat."""

    def generate(snapshot: MarketSnapshot, config: BaseModel, state: StrategyState) -> Signal | None:
        window = snapshot.window(state.symbol, "1m")
        if window is None or state.open_action is not None:
            return None
        close, key_us = float(window.close[-1]), int(window.open_time_us[-1])
        return Signal(signal_id=f"{name}:{key_us}", strategy=name, strategy_version="1",
                              symbol=state.symbol, timeframe="1m", time=us_to_datetime(snapshot.ts_us),
                              action=SignalAction.LONG, strength=0.9, entry=close,
                              stop_loss=close * 0.99, take_profit=close * 1.05, reason="long")

    return LoadedStrategy(name=name, version="1", symbols=("XRP/USDT",), config=_NoConfig(),
                          generate=generate, source="test", reads=frozenset({"candles"}))


class _Gate:
    """A confirmation gate that keeps every signal waiting."""

    def __init__(self) -> None:
        self.submitted: list[Signal] = []

    def submit(self, signal: Signal, snapshot: MarketSnapshot) -> None:
        self.submitted.append(signal)

    def awaiting(self) -> set[str]:
        return {s.strategy for s in self.submitted}


class _Announcer:
    def __init__(self) -> None:
        self.announced: list[StrongSignal] = []

    def publish(self, item: StrongSignal, /) -> str:
        self.announced.append(item)
        return "0-1"


def test_gated_signals_wait_for_their_verdict_and_strong_ones_are_announced() -> None:
    settings = Settings(symbols=("XRP/USDT",), strategies=StrategySettings(technical_agent=False, gated=("gated",)))
    audit, gate, announcer = MemoryAudit(), _Gate(), _Announcer()
    kernel = TradingKernel(settings, audit, strategies=[_long_while_flat("gated"), _long_while_flat("free")],
                           gate=gate, strong_signals=announcer)
    walk = _walk(3)
    kernel.on_candles(walk[:1])
    # The free strategy trades at once; the gated one's signal waits at the gate, its account untouched.
    assert kernel.account("paper:free").stats.fills == 1
    assert kernel.account("paper:gated").stats.signals == 0
    assert [s.strategy for s in gate.submitted] == ["gated"]
    assert sorted(s.strategy for s in announcer.announced) == ["free", "gated"]
    # Still waiting: the gated strategy is not told it holds nothing, so it does not ask again.
    kernel.on_candles(walk[1:])
    assert len(gate.submitted) == 1
    assert kernel.strategy_state("gated", "XRP/USDT").open_action is SignalAction.LONG


class _FiveMinutes(BaseModel):
    timeframe: str = "5m"


def test_a_strategy_whose_state_its_own_signal_changed_is_asked_again_before_its_next_candle() -> None:
    """The kernel skips a candle strategy's runner while nothing it reads changed; its own
    signal changes its state, which it reads: it is asked again at the next moment, on the
    same 5m candle (here: to close what it just opened)."""
    def generate(snapshot: MarketSnapshot, config: BaseModel, state: StrategyState) -> Signal | None:
        window = snapshot.window(state.symbol, "5m")
        if window is None:
            return None
        close, key_us = float(window.close[-1]), int(window.open_time_us[-1])
        common = {"strategy": "flip", "strategy_version": "1", "symbol": state.symbol, "timeframe": "5m",
                  "time": us_to_datetime(snapshot.ts_us), "strength": 0.9, "entry": close}
        if state.open_action is None:
            return Signal(signal_id=f"long:{key_us}", action=SignalAction.LONG, stop_loss=close * 0.99,
                          take_profit=close * 1.05, reason="long", **common)
        return Signal(signal_id=f"close:{key_us}", action=SignalAction.CLOSE, reason="close", **common)

    flip = LoadedStrategy(name="flip", version="1", symbols=("XRP/USDT",), config=_FiveMinutes(),
                          generate=generate, source="test", reads=frozenset({"candles"}))
    audit = MemoryAudit()
    kernel = TradingKernel(SETTINGS, audit, strategies=[flip])
    walk = _walk(12)
    kernel.on_candles(walk)
    fills = [(f.side.value, datetime_to_us(f.time)) for f in audit.fills]
    # LONG when a 5m candle closes, closed at the next minute (on that same 5m candle).
    five_minute_closes = [c.close_time_us for c in walk if c.close_time_us % (5 * US_PER_MINUTE) == 0]
    assert len(five_minute_closes) == 2
    assert fills == [fill for close in five_minute_closes
                     for fill in (("buy", close), ("sell", close + US_PER_MINUTE))]


@pytest.mark.parametrize("split", [1, 7, 250])
def test_how_the_candles_are_batched_changes_nothing(shared_data, split: int) -> None:
    """The kernel decides moment by moment: handing it the candles in batches of any size
    gives the same trail as handing them all at once."""
    frame = pd.read_parquet(shared_data / "binance_xrp-eth_1m.parquet")[:600]
    candles = [Candle("XRP/USDT", "1m", datetime_to_us(row.ts.to_pydatetime()), row.open, row.high, row.low,
                      row.close, row.volume, 1) for row in frame.itertuples()]
    whole, batched = MemoryAudit(), MemoryAudit()
    one = TradingKernel(Settings(symbols=("XRP/USDT",)), whole)
    one.on_candles(candles)
    many = TradingKernel(Settings(symbols=("XRP/USDT",)), batched)
    for start in range(0, len(candles), split):
        many.on_candles(candles[start:start + split])
    assert batched.fills == whole.fills and batched.fills
    assert batched.positions == whole.positions
    assert batched.snapshots == whole.snapshots


def test_an_entry_block_refuses_every_entry_and_lets_exits_through() -> None:
    audit = MemoryAudit()
    kernel = TradingKernel(SETTINGS, audit)
    walk = _walk()
    kernel.on_candles(walk)
    last = walk[-1]
    assert kernel.on_intent(_intent(last, "before")).approved
    (position,) = kernel.positions.open_positions()

    kernel.entry_blocks.set(RiskReason.TRADING_HALTED, us_to_datetime(last.close_time_us), "halted by hand")
    assert not kernel.entry_blocks.set(RiskReason.TRADING_HALTED, us_to_datetime(last.close_time_us), "again")
    refused = kernel.on_intent(_intent(last, "during"))
    assert not refused.approved and RiskReason.TRADING_HALTED in refused.reasons
    assert audit.checks[-1] == refused  # the refusal is recorded, not dropped
    # The open position is still watched while entries are blocked: its stop fires.
    kernel.on_candles([_candle(60, position.stop_loss * 0.99, last.close, last.close)])
    assert audit.positions[position.position_id].exit_reason is OrderPurpose.STOP_LOSS

    lifted = kernel.entry_blocks.clear(RiskReason.TRADING_HALTED)
    assert lifted is not None and lifted.detail == "halted by hand"
    assert kernel.entry_blocks.reasons == ()
    assert kernel.on_intent(_intent(walk[-1], "after")).approved


def test_only_guards_set_entry_blocks() -> None:
    with pytest.raises(ValueError, match="not an entry block"):
        TradingKernel(SETTINGS, MemoryAudit()).entry_blocks.set(
            RiskReason.NO_PRICE, us_to_datetime(T0), "a risk rule is not a block")


def _market_at(price: float, count: int = 60) -> list[Candle]:
    """A flat market at ``price`` (the last close is the market price)."""
    return [Candle("XRP/USDT", "1m", T0 + i * US_PER_MINUTE, price, price * 1.0002, price * 0.9998, price, 1000.0, 5)
            for i in range(count)]


def test_a_decision_stated_below_the_market_does_not_fill_at_its_own_price() -> None:
    # The case found by hand: a LONG stated 4.5 % below a 0.50 market used to be approved and
    # filled at -4.45 %, and its account's equity rose the moment it filled.
    audit, lifecycle = MemoryAudit(), _Lifecycle()
    kernel = TradingKernel(SETTINGS, audit, decisions=lifecycle)
    market = _market_at(0.50)
    kernel.on_candles(market)
    now_us = market[-1].close_time_us
    kernel.on_decisions([_decision("low", "llm:claude", 0.50 * 0.955, now_us)])

    claude = kernel.account("llm:claude")
    assert audit.fills == [] and claude.positions.open_positions() == []
    (order,) = audit.orders.values()
    assert order.state.value == "cancelled" and order.filled_quantity == 0.0
    assert order.order.limit_price == pytest.approx(0.50 * 0.955 * (1 + SETTINGS.slippage))
    assert claude.portfolio.equity_usdt(kernel.market.prices) == pytest.approx(
        kernel.portfolio.equity_usdt(kernel.market.prices))  # untouched: the same as an idle account


def test_an_order_fills_at_the_market_when_it_is_worked_not_when_the_decision_was_timed() -> None:
    audit, lifecycle = MemoryAudit(), _Lifecycle()
    kernel = TradingKernel(SETTINGS, audit, decisions=lifecycle)
    market = _market_at(0.50)
    kernel.on_candles(market)
    # The market moved up since the decision's candle; the decision states the old price.
    decided_us = market[-1].close_time_us
    kernel.on_candles([Candle("XRP/USDT", "1m", T0 + 60 * US_PER_MINUTE, 0.50, 0.502, 0.4995, 0.501, 1000.0, 5)])
    kernel.on_decisions([_decision("late", "llm:claude", 0.501, decided_us)])
    (fill,) = audit.fills
    assert fill.price == pytest.approx(0.501 * (1 + SETTINGS.slippage))  # the market's price, never 0.50
    assert fill.time == us_to_datetime(T0 + 61 * US_PER_MINUTE)  # worked at the market's time


def test_a_stop_the_market_gapped_through_fills_at_the_first_price_beyond_it() -> None:
    audit = MemoryAudit()
    kernel = TradingKernel(SETTINGS, audit)
    walk = _walk()
    kernel.on_candles(walk)
    last = walk[-1]
    assert kernel.on_intent(_intent(last, "gapped")).approved
    (position,) = kernel.positions.open_positions()
    opened_below = position.stop_loss * 0.98
    kernel.on_candles([Candle("XRP/USDT", "1m", T0 + 60 * US_PER_MINUTE, opened_below, opened_below * 1.001,
                              opened_below * 0.999, opened_below, 1000.0, 5)])
    closed = audit.positions[position.position_id]
    assert closed.exit_reason is OrderPurpose.STOP_LOSS
    assert closed.exit_price == pytest.approx(opened_below * (1 - SETTINGS.slippage))  # not the stop level


def test_a_take_profit_the_market_gapped_through_fills_at_the_open() -> None:
    audit = MemoryAudit()
    kernel = TradingKernel(SETTINGS, audit)
    walk = _walk()
    kernel.on_candles(walk)
    assert kernel.on_intent(_intent(walk[-1], "leapt")).approved
    (position,) = kernel.positions.open_positions()
    opened_above = position.take_profit * 1.01
    kernel.on_candles([Candle("XRP/USDT", "1m", T0 + 60 * US_PER_MINUTE, opened_above, opened_above * 1.001,
                              opened_above * 0.999, opened_above, 1000.0, 5)])
    closed = audit.positions[position.position_id]
    assert closed.exit_reason is OrderPurpose.TAKE_PROFIT
    assert closed.exit_price == pytest.approx(opened_above * (1 - SETTINGS.slippage))


def test_a_close_fills_at_the_market_not_at_the_price_it_names() -> None:
    audit = MemoryAudit()
    kernel = TradingKernel(SETTINGS, audit)
    walk = _walk()
    kernel.on_candles(walk)
    last = walk[-1]
    assert kernel.on_intent(_intent(last, "held")).approved
    closing = _intent(last, "held").model_copy(update={"action": IntentAction.CLOSE, "stop_loss": None,
                                                      "take_profit": None, "entry": last.close * 1.04})
    assert kernel.on_intent(closing).approved
    assert audit.fills[-1].price == pytest.approx(last.close * (1 - SETTINGS.slippage))


def _opened(kernel: TradingKernel, name: str) -> tuple[Candle, Position]:
    walk = _walk()
    kernel.on_candles(walk)
    assert kernel.on_intent(_intent(walk[-1], name)).approved
    (position,) = kernel.positions.open_positions()
    return walk[-1], position


def test_a_stop_crossed_while_the_market_could_not_be_seen_fills_at_the_first_price_seen_after() -> None:
    audit = MemoryAudit()
    kernel = TradingKernel(SETTINGS, audit)
    last, position = _opened(kernel, "blind")
    kernel.lose_sight()
    assert kernel.blind
    # Two minutes closed unseen; the first, crossing the stop, closed back above it. When the
    # market is seen again, it trades a little above the stop.
    crossed = _candle(60, position.stop_loss * 0.99, last.close, last.close)
    after = _candle(61, last.close * 0.999, last.close, last.close)
    seen = LastPrice("XRP/USDT", position.stop_loss * 1.002, after.close_time_us + 5_000_000)
    kernel.regain_sight({"XRP/USDT": seen}, [crossed, after])
    assert not kernel.blind
    kernel.on_candles([crossed, after])

    closed = audit.positions[position.position_id]
    assert closed.exit_reason is OrderPurpose.STOP_LOSS
    # Not at the stop level (the executor could not act then): the first price seen after.
    assert closed.exit_price == pytest.approx(seen.price * (1 - SETTINGS.slippage))
    assert closed.closed_at == us_to_datetime(seen.ts_us)
    assert closed.exit_crossed_at == us_to_datetime(crossed.close_time_us)
    assert kernel.market.prices["XRP/USDT"] == seen.price  # not the unseen candles' old close
    assert kernel.entry_blocks.reasons == ()  # the late candles' block is lifted after them


def test_an_entry_on_a_candle_seen_late_is_refused_and_recorded() -> None:
    audit = MemoryAudit()
    kernel = TradingKernel(SETTINGS, audit, strategies=[_long_while_flat("eager")])
    walk = _walk()
    kernel.lose_sight()  # before the first candle: everything up to the price seen came late
    seen = LastPrice("XRP/USDT", walk[1].close, walk[1].close_time_us + 1_000_000)
    kernel.regain_sight({"XRP/USDT": seen}, walk[:2])
    kernel.on_candles(walk[:2])
    refused = [c for c in audit.checks if not c.approved]
    assert len(refused) == 2 and all(c.reasons == (RiskReason.MARKET_SEEN_LATE,) for c in refused)
    assert audit.fills == []
    # Seen in time again: the next candle's entry goes through, at its close.
    kernel.on_candles(walk[2:3])
    assert audit.fills[0].price == pytest.approx(walk[2].close * (1 + SETTINGS.slippage))
    assert kernel.entry_blocks.reasons == ()


def test_a_stop_crossed_in_sight_still_fills_at_its_level() -> None:
    audit = MemoryAudit()
    kernel = TradingKernel(SETTINGS, audit)
    last, position = _opened(kernel, "seen")
    # Blind and seeing again before anything closed: the next candles are seen in time.
    kernel.lose_sight()
    kernel.regain_sight({"XRP/USDT": LastPrice("XRP/USDT", last.close, last.close_time_us)}, [])
    assert kernel.blind  # nothing newer than what it had seen: not seen again yet
    kernel.regain_sight({"XRP/USDT": LastPrice("XRP/USDT", last.close, last.close_time_us + 1)}, [])
    assert not kernel.blind
    kernel.on_candles([_candle(60, position.stop_loss * 0.99, last.close, last.close)])
    closed = audit.positions[position.position_id]
    assert closed.exit_price == pytest.approx(position.stop_loss * (1 - SETTINGS.slippage))
    assert closed.exit_crossed_at is None
