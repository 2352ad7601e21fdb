"""The market guards on the kernel alone, in memory, on crafted candles and a clock the test sets:
the stale-market guard on the wall clock and on a replay's clock, the volatility halt, the
failure breaker and what of it survives a restart, and their configuration."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from tests.support.memory_audit import MemoryAudit
from triplegain_core.config import ConfigError, Settings, StrategySettings, load_settings
from triplegain_core.execution.kernel import TradingKernel
from triplegain_core.model.market import US_PER_MINUTE, US_PER_SECOND, Candle, us_to_datetime
from triplegain_core.model.quotes import LastPrice
from triplegain_core.model.signals import IntentAction, TradeIntent
from triplegain_core.risk.guards import (
    BreakerFailure,
    GuardAction,
    GuardSettings,
    GuardState,
    ReplayClock,
    VolatilityHalt,
    WallClock,
)
from triplegain_core.risk.rules import RiskLimits, RiskReason

T0 = 1_780_000_000 * US_PER_SECOND // US_PER_MINUTE * US_PER_MINUTE
SYMBOL = "XRP/USDT"


class _Clock:
    def __init__(self, now_us: int) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us


def _kernel(guards: GuardSettings, audit: MemoryAudit, clock: WallClock | ReplayClock | None = None
            ) -> TradingKernel:
    settings = Settings(symbols=(SYMBOL,), strategies=StrategySettings(enabled=(), technical_agent=False),
                        risk=RiskLimits(consecutive_losses=1000), guards=guards)
    return TradingKernel(settings, audit, clock=clock)


def _candles(closes: list[float], start_minute: int = 0) -> list[Candle]:
    return [Candle(SYMBOL, "1m", T0 + (start_minute + i) * US_PER_MINUTE, c, c * 1.0001, c * 0.9999, c, 100.0, 5)
            for i, c in enumerate(closes)]


def _quiet(count: int, start: float = 0.5, step: float = 0.0005) -> list[float]:
    """Closes moving by ``step`` (a log return) up and down in turn: a steady volatility."""
    closes, price = [], start
    for i in range(count):
        price *= math.exp(step if i % 2 else -step)
        closes.append(price)
    return closes


def _entry(kernel: TradingKernel, intent_id: str) -> TradeIntent:
    market_us = kernel.now_us()
    assert market_us is not None
    price = kernel.market.prices[SYMBOL]
    return TradeIntent(intent_id=intent_id, strategy="walk", tested=True, symbol=SYMBOL,
                       time=us_to_datetime(market_us), action=IntentAction.LONG, entry=price,
                       stop_loss=price * 0.99, take_profit=price * 1.05)


def test_the_market_goes_stale_past_the_limit_on_the_wall_clock_and_comes_back_with_a_trade() -> None:
    audit, clock = MemoryAudit(), _Clock(0)
    kernel = _kernel(GuardSettings(stale_market_s=10), audit, WallClock(clock))
    assert not kernel.check_guards()  # no market at all yet: nothing to judge, nothing can trade
    kernel.on_candles(_candles(_quiet(5)))
    last_close = T0 + 5 * US_PER_MINUTE
    clock.now_us = last_close + 10 * US_PER_SECOND
    assert not kernel.check_guards() and kernel.stats.market_age_s == 10.0
    assert kernel.on_intent(_entry(kernel, "fresh")).approved

    clock.now_us += 1
    assert kernel.check_guards()
    refused = kernel.on_intent(_entry(kernel, "stale"))
    assert not refused.approved and RiskReason.STALE_MARKET in refused.reasons
    assert audit.checks[-1] == refused
    (event,) = audit.guard_events
    assert (event.guard, event.action, event.time) == (RiskReason.STALE_MARKET, GuardAction.SET,
                                                       us_to_datetime(clock.now_us))
    assert "no streamer heartbeat" in event.detail

    # A trade seen now: fresh again at the next check, by itself.
    clock.now_us += 30 * US_PER_SECOND
    kernel.on_ticks({SYMBOL: LastPrice(SYMBOL, 0.5, clock.now_us - US_PER_SECOND)})
    kernel.observe_market(clock.now_us - US_PER_SECOND)
    assert not kernel.check_guards() and kernel.entry_blocks.reasons == ()
    assert [e.action for e in audit.guard_events] == [GuardAction.SET, GuardAction.CLEARED]
    assert kernel.stats.guard_events == 2 and "blocks=- guard_events=2" in str(kernel.stats)


def test_on_a_replays_clock_a_stopped_replay_stops_time() -> None:
    audit = MemoryAudit()
    kernel = _kernel(GuardSettings(stale_market_s=10), audit, ReplayClock())
    kernel.on_candles(_candles(_quiet(5)))
    last_close = T0 + 5 * US_PER_MINUTE
    # The replay stopped: its market time stands still, however long the wait.
    for _ in range(3):
        assert not kernel.check_guards() and kernel.stats.market_age_s == 0.0
    # A streamer that read further than it wrote does not age the market either: the same
    # replay gives the same trail however fast the machine runs it.
    kernel.observe_streamer(heartbeat_us=123, last_trade_us=last_close + 30 * US_PER_SECOND)
    assert not kernel.check_guards()
    kernel.on_candles(_candles(_quiet(1), 5))
    assert not kernel.check_guards() and kernel.stats.market_age_s == 0.0
    assert audit.guard_events == []


def _volatile_kernel(audit: MemoryAudit) -> TradingKernel:
    # Norm: the median volatility of the last 6 ten-minute windows; halt beyond 3 times it.
    guards = GuardSettings(volatility_window_minutes=10, volatility_norm_windows=6, volatility_halt_multiple=3.0)
    return _kernel(guards, audit)


def test_a_volatility_spike_halts_entries_until_the_volatility_is_back_within_its_norm() -> None:
    audit = MemoryAudit()
    kernel = _volatile_kernel(audit)
    quiet = _quiet(70)
    kernel.on_candles(_candles(quiet))
    assert kernel.guards.volatility.ratios()[SYMBOL] == pytest.approx(1.0)
    assert kernel.on_intent(_entry(kernel, "calm")).approved

    # Three minutes swinging 0.5 % each way: ten times the usual move. The first one alone lifts
    # the realized volatility over 10 minutes to sqrt((0.005² + 9 · 0.0005²) / 10) = 3.3 times the norm.
    wild = _quiet(3, quiet[-1], 0.005)
    kernel.on_candles(_candles(wild, 70))
    assert kernel.entry_blocks.reasons == (RiskReason.VOLATILITY_HALT,)
    (halt,) = audit.guard_events
    assert halt.action is GuardAction.SET and halt.time == us_to_datetime(T0 + 71 * US_PER_MINUTE)
    assert "XRP/USDT realized volatility 0.00165/min over 10 min is 3.3x its norm 0.0005" in halt.detail
    refused = kernel.on_intent(_entry(kernel, "wild"))
    assert not refused.approved and RiskReason.VOLATILITY_HALT in refused.reasons

    # Calm again: once the swings leave the 10-minute window the halt lifts, at that close.
    calm = _quiet(10, wild[-1])
    kernel.on_candles(_candles(calm, 73))
    assert kernel.entry_blocks.reasons == ()
    assert [e.action for e in audit.guard_events] == [GuardAction.SET, GuardAction.CLEARED]
    # Only the rules of every day remain (the first entry is still open).
    assert kernel.on_intent(_entry(kernel, "calm-again")).reasons == (RiskReason.POSITION_ALREADY_OPEN,)


def test_without_a_norm_the_volatility_halt_does_not_judge() -> None:
    audit = MemoryAudit()
    kernel = _volatile_kernel(audit)
    # 25 quiet minutes make two whole windows: no norm yet, so a spike halts nothing.
    quiet = _quiet(25)
    kernel.on_candles(_candles(quiet + _quiet(3, quiet[-1], 0.02)))
    assert kernel.guards.volatility.ratios() == {} and kernel.entry_blocks.reasons == ()


def test_the_warm_history_gives_the_volatility_halt_its_norm() -> None:
    audit = MemoryAudit()
    kernel = _volatile_kernel(audit)
    quiet = _quiet(70)
    kernel.warm({SYMBOL: _candles(quiet)})
    assert kernel.guards.volatility.ratios()[SYMBOL] == pytest.approx(1.0)
    kernel.on_candles(_candles(_quiet(3, quiet[-1], 0.005), 70))
    assert kernel.entry_blocks.reasons == (RiskReason.VOLATILITY_HALT,)


def _breaker_kernel(audit: MemoryAudit, clock: _Clock) -> TradingKernel:
    guards = GuardSettings(failure_limit=3, failure_window_s=60, failure_quiet_s=120)
    kernel = _kernel(guards, audit, WallClock(clock))
    kernel.on_candles(_candles(_quiet(5)))
    return kernel


def test_failures_within_the_window_make_every_account_reduce_only_until_a_quiet_period() -> None:
    audit, clock = MemoryAudit(), _Clock(T0)
    kernel = _breaker_kernel(audit, clock)
    assert kernel.on_intent(_entry(kernel, "before")).approved
    (position,) = kernel.positions.open_positions()
    # Spread wider than the window, failures do not add up.
    for _ in range(4):
        kernel.record_failure(BreakerFailure.READ, "the hot state did not answer")
        clock.now_us += 31 * US_PER_SECOND
    assert kernel.entry_blocks.reasons == ()

    kernel.record_failure(BreakerFailure.WRITE, "the database refused a write")
    kernel.record_failure(BreakerFailure.WRITE, "the database refused a write")
    assert kernel.entry_blocks.reasons == (RiskReason.REDUCE_ONLY,)
    assert "3 failures within 60 s" in audit.guard_events[-1].detail
    refused = kernel.on_intent(_entry(kernel, "during"))
    assert not refused.approved and RiskReason.REDUCE_ONLY in refused.reasons
    close = _entry(kernel, "close").model_copy(update={"action": IntentAction.CLOSE, "stop_loss": None,
                                                        "take_profit": None})
    assert kernel.on_intent(close).approved  # exits go on
    assert position.position_id not in {p.position_id for p in kernel.positions.open_positions()}

    clock.now_us += 119 * US_PER_SECOND
    kernel.check_guards()
    assert kernel.entry_blocks.reasons == (RiskReason.REDUCE_ONLY,)
    clock.now_us += US_PER_SECOND
    kernel.check_guards()
    assert kernel.entry_blocks.reasons == ()
    assert [(e.guard, e.action) for e in audit.guard_events] == [
        (RiskReason.REDUCE_ONLY, GuardAction.SET), (RiskReason.REDUCE_ONLY, GuardAction.CLEARED)]
    assert kernel.guards.failures == {"read": 4, "write": 2}


def test_orders_the_venue_rejects_count_as_failures() -> None:
    audit, clock = MemoryAudit(), _Clock(T0)
    kernel = _breaker_kernel(audit, clock)
    # What the paper venue refused, as its account counted it.
    kernel.accounts[0].stats.rejected_orders += 3
    kernel.check_guards()
    assert kernel.entry_blocks.reasons == (RiskReason.REDUCE_ONLY,)
    assert kernel.guards.failures == {"venue_rejection": 3}


def test_the_breakers_reduce_only_mode_and_its_failures_survive_a_restart() -> None:
    clock = _Clock(T0)
    kernel = _breaker_kernel(MemoryAudit(), clock)
    for _ in range(3):
        kernel.record_failure(BreakerFailure.WRITE, "refused")
    state = GuardState.model_validate_json(kernel.guards.state().model_dump_json())
    assert len(state.failure_times_us) == 3 and state.reduce_only_since_us == T0

    restarted = _breaker_kernel(MemoryAudit(), clock)
    restarted.guards.restore(state)
    assert restarted.entry_blocks.reasons == (RiskReason.REDUCE_ONLY,)
    clock.now_us += 120 * US_PER_SECOND
    restarted.check_guards()
    assert restarted.entry_blocks.reasons == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[guards]\nstale_market_s = 0\n", "guards.stale_market_s"),
        ("[guards]\nclock = \"sundial\"\n", "guards.clock"),
        ("[guards]\nvolatility_halt_multiple = 1.0\n", "guards.volatility_halt_multiple"),
        ("[guards]\nvolatility_norm_windows = 2\n", "guards.volatility_norm_windows"),
        ("[guards]\nfailure_limit = 0\n", "guards.failure_limit"),
        ("[guards]\nfailure_window_s = 600\nfailure_quiet_s = 60\n", "failure_quiet_s .* must be at least"),
    ],
)
def test_out_of_range_guard_settings_are_refused_with_a_clear_message(tmp_path: Path, text: str,
                                                                       message: str) -> None:
    config = tmp_path / "tg.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})


def test_the_guard_defaults() -> None:
    guards = Settings().guards
    assert (guards.stale_market_s, guards.clock, guards.volatility_halt_multiple) == (10.0, "wall", 4.0)
    assert (guards.volatility_window_minutes, guards.volatility_norm_windows) == (60, 24)
    assert (guards.failure_limit, guards.failure_window_s, guards.failure_quiet_s) == (5, 60.0, 300.0)


@pytest.mark.parametrize(("name", "halts", "halted_minutes"),
                         [("binance_xrp-eth_1m.parquet", 0, 0), ("binance_alt-btc_1m.parquet", 1, 25)])
def test_the_default_volatility_halt_on_real_markets_fires_on_a_crash_only(
    shared_data: Path, name: str, halts: int, halted_minutes: int,
) -> None:
    frame = pd.read_parquet(shared_data / name)
    halt = VolatilityHalt(GuardSettings(), [SYMBOL])
    fired = halted = 0
    before = False
    for opened, close in zip(frame["ts"], frame["close"], strict=True):
        halt.add([Candle(SYMBOL, "1m", int(pd.Timestamp(opened).value // 1000), close, close, close, close, 1.0, 1)])
        now = bool(halt.beyond())
        halted += now
        fired += now and not before
        before = now
    assert (fired, halted) == (halts, halted_minutes)
