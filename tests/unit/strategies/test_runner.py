"""StrategyRunner and the confirmation gate: failures contained, no repeats, the gate only vetoes."""

from __future__ import annotations

import types
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, ValidationError

from triplegain_core.decisions.gate import (
    GateOutcome,
    GatePolicy,
    GateVerdict,
    Verdict,
    review_signal,
)
from triplegain_core.marketdata.snapshot import CandleBuffer, CandleWindow, MarketSnapshot
from triplegain_core.model.market import Candle, datetime_to_us
from triplegain_core.model.signals import Direction, IntentAction, Signal, SignalAction
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.registry import (
    LoadedStrategy,
    StrategyLoadError,
    discover_strategies,
    load_strategy,
)
from triplegain_core.strategies.replay import replay_candles
from triplegain_core.strategies.runner import StrategyRunner

T0 = 1_700_000_000_000_000
SPAN = 300_000_000
SYMBOLS = ("BTC/USDT", "XRP/USDT", "XRP/BTC")


class EmptyConfig(BaseModel):
    """No settings."""


def _window(symbol: str, candles: int) -> CandleWindow:
    close = 100.0 + np.arange(candles, dtype=float)
    return CandleWindow.from_arrays(symbol, "5m", T0 + np.arange(candles) * SPAN, close, close + 1, close - 1,
                                    close, np.ones(candles))


def _snapshot(candles: int) -> MarketSnapshot:
    return MarketSnapshot(ts_us=T0 + candles * SPAN,
                          candles={(s, "5m"): _window(s, candles) for s in SYMBOLS})


def _long_on_last(name: str):
    def generate(snapshot: MarketSnapshot, config: BaseModel, state: StrategyState) -> Signal | None:
        window = snapshot.window(state.symbol, "5m")
        assert window is not None
        entry = float(window.close[-1])
        return Signal(
            signal_id=f"{name}:{state.symbol}:{window.last_open_time_us}", strategy=name, strategy_version="1",
            symbol=state.symbol, timeframe="5m", time=datetime.fromtimestamp(window.last_close_time_us / 1e6, UTC),
            action=SignalAction.LONG, strength=0.8, entry=entry, stop_loss=entry * 0.99, take_profit=entry * 1.02,
            reason="always long", indicators={"close": entry},
        )
    return generate


def _plugin(name: str, generate, symbols: tuple[str, ...] = SYMBOLS) -> LoadedStrategy:
    module = types.SimpleNamespace(NAME=name, VERSION="1", SYMBOLS=symbols, Config=EmptyConfig,
                                   generate_signal=generate)
    return load_strategy(module, f"test:{name}")


def test_one_strategy_raising_does_not_stop_the_others() -> None:
    def explode_on_xrp(snapshot: MarketSnapshot, config: BaseModel, state: StrategyState) -> None:
        if state.symbol.startswith("XRP"):
            raise ZeroDivisionError("division by zero in a plugin")
        return None

    runner = StrategyRunner([_plugin("boom", explode_on_xrp), _plugin("steady", _long_on_last("steady"))])
    signals = runner.run(_snapshot(10))
    assert [(s.strategy, s.symbol) for s in signals] == [("steady", symbol) for symbol in SYMBOLS]
    assert runner.failure_counts["boom"] == 2
    assert [(f.strategy, f.symbol) for f in runner.last_report.failures] == [("boom", "XRP/USDT"), ("boom", "XRP/BTC")]
    assert "ZeroDivisionError" in runner.last_report.failures[0].error
    runner.run(_snapshot(11))
    assert runner.failure_counts["boom"] == 4 and "steady" not in runner.failure_counts


def test_invalid_returns_are_counted_not_emitted() -> None:
    def returns_dict(snapshot: MarketSnapshot, config: BaseModel, state: StrategyState) -> object:
        return {"direction": "long"}

    other = _long_on_last("impostor")
    runner = StrategyRunner([
        _plugin("dicts", returns_dict),
        _plugin("wrong_name", other),  # emits signals named "impostor"
        _plugin("steady", _long_on_last("steady"), symbols=("BTC/USDT",)),
    ])
    signals = runner.run(_snapshot(10))
    assert [(s.strategy, s.symbol) for s in signals] == [("steady", "BTC/USDT")]
    assert runner.failure_counts == {"dicts": 3, "wrong_name": 3}


def test_a_signal_is_emitted_once_per_candle_and_state_records_it() -> None:
    runner = StrategyRunner([_plugin("steady", _long_on_last("steady"), symbols=("XRP/USDT",))])
    first = runner.run(_snapshot(10))
    assert len(first) == 1
    assert runner.run(_snapshot(10)) == []  # the same closed candle, 100 ms later
    state = runner.state("steady", "XRP/USDT")
    assert state.open_action is SignalAction.LONG and state.open_entry == first[0].entry
    assert state.signals_emitted == 1 and state.last_signal_id == first[0].signal_id
    assert len(runner.run(_snapshot(11))) == 1  # a new candle
    assert state.signals_emitted == 2


def _real_5m(folder: Path, name: str, symbol: str, scale: float) -> list[Candle]:
    frame = pd.read_parquet(folder / name)
    return [Candle(symbol, "5m", datetime_to_us(r.ts.to_pydatetime()), r.open * scale, r.high * scale,
                   r.low * scale, r.close * scale, r.volume, 0) for r in frame.itertuples()]


def test_runner_over_builtins_on_real_candles_matches_each_strategy_alone(shared_data: Path) -> None:
    cycles, capacity = 700, 300
    series = {
        "XRP/USDT": _real_5m(shared_data, "binance_xrp-usdt-perp_5m.parquet", "XRP/USDT", 1.0),
        "XRP/BTC": _real_5m(shared_data, "binance_eth-btc_5m.parquet", "XRP/BTC", 1.0),
        "BTC/USDT": _real_5m(shared_data, "binance_xrp-usdt-perp_5m.parquet", "BTC/USDT", 50_000.0),
    }
    catalog = discover_strategies(entry_point_group=None)
    runner = StrategyRunner(catalog.strategies)
    assert len(runner.states) == 10 * 3 + 1  # ratio trading runs on XRP/BTC only
    buffers = {symbol: CandleBuffer(symbol, "5m", capacity) for symbol in series}
    emitted: dict[str, Signal] = {}
    for cycle in range(cycles):
        for symbol, buffer in buffers.items():
            buffer.append(series[symbol][cycle])
        windows = {(symbol, "5m"): buffer.window() for symbol, buffer in buffers.items()}
        ts = max(window.last_close_time_us for window in windows.values() if window is not None)
        for signal in runner.run(MarketSnapshot(ts_us=ts, candles=windows)):
            emitted[signal.signal_id] = signal
        assert runner.last_report.failures == []
    expected: dict[str, Signal] = {}
    for strategy in catalog.strategies:
        if getattr(strategy.config, "timeframe", None) != "5m":
            continue
        for symbol in strategy.symbols:
            history = CandleWindow.from_candles(series[symbol][:cycles])
            expected.update((s.signal_id, s) for _, s in replay_candles(strategy, history, window=capacity))
    # The runner's snapshot also holds the XRP/USDT and BTC/USDT candles, so ratio trading
    # records the implied cross there, which a single-series replay cannot.
    implied = [s for s in emitted.values() if s.strategy == "ratio_trading"]
    assert implied and all("implied_ratio" in s.indicators for s in implied)
    stripped = {
        key: s.model_copy(update={"indicators": {k: v for k, v in s.indicators.items() if k != "implied_ratio"}})
        for key, s in emitted.items()
    }
    assert stripped == expected
    assert len({s.strategy for s in emitted.values()}) >= 6


def test_calls_are_skipped_while_the_inputs_they_read_are_unchanged() -> None:
    calls: list[str] = []

    def counting(snapshot: MarketSnapshot, config: BaseModel, state: StrategyState) -> Signal | None:
        calls.append(state.symbol)
        return _long_on_last("counting")(snapshot, config, state) if len(calls) == 1 else None

    module = types.SimpleNamespace(NAME="counting", VERSION="1", SYMBOLS=("XRP/USDT",), Config=EmptyConfig,
                                   generate_signal=counting, READS=frozenset({"candles"}))
    runner = StrategyRunner([load_strategy(module, "test")])
    assert len(runner.run(_snapshot(10))) == 1 and len(calls) == 1
    # Its state changed (it emitted), so it is asked once more on the same candles...
    assert runner.run(_snapshot(10)) == [] and len(calls) == 2
    # ...then not again until its candles change; new prices are not among what it reads.
    for _ in range(5):
        same = _snapshot(10)
        assert runner.run(MarketSnapshot(ts_us=same.ts_us + 1, candles=same.candles, prices={"XRP/USDT": 1.0})) == []
    assert len(calls) == 2 and runner.skipped_calls == 5
    runner.run(_snapshot(11))
    assert len(calls) == 3


def test_reads_must_name_snapshot_parts() -> None:
    module = types.SimpleNamespace(NAME="x", VERSION="1", SYMBOLS=("XRP/USDT",), Config=EmptyConfig,
                                   generate_signal=_long_on_last("x"), READS=frozenset({"candles", "gossip"}))
    with pytest.raises(StrategyLoadError, match="READS"):
        load_strategy(module, "test")


def test_runner_rejects_duplicate_names() -> None:
    with pytest.raises(ValueError, match="unique"):
        StrategyRunner([_plugin("a", _long_on_last("a")), _plugin("a", _long_on_last("a"))])


# --- the confirmation gate -----------------------------------------------------------------

class FixedGate:
    def __init__(self, verdict: object) -> None:
        self.verdict = verdict
        self.calls = 0

    def review(self, signal: Signal, snapshot: MarketSnapshot) -> object:
        self.calls += 1
        return self.verdict


class RaisingGate:
    def review(self, signal: Signal, snapshot: MarketSnapshot) -> GateVerdict:
        raise TimeoutError("LLM did not answer in 10 s")


class TamperingGate:
    """Tries to move the stop on what it was given, then confirms."""

    def review(self, signal: Signal, snapshot: MarketSnapshot) -> GateVerdict:
        object.__setattr__(signal, "stop_loss", signal.entry * 0.5)
        object.__setattr__(signal, "action", SignalAction.SHORT)
        return GateVerdict(verdict=Verdict.CONFIRM, reason="looks fine (moved your stop)")


def _baseline_signal() -> tuple[Signal, MarketSnapshot]:
    snapshot = _snapshot(10)
    signal = _long_on_last("baseline")(snapshot, EmptyConfig(), StrategyState(symbol="XRP/USDT"))
    assert signal is not None
    return signal, snapshot


def test_confirm_passes_the_baseline_object_and_records_both_reasons() -> None:
    signal, snapshot = _baseline_signal()
    decision = review_signal(signal, snapshot, FixedGate(GateVerdict(verdict=Verdict.CONFIRM, reason="trend intact")))
    assert decision.outcome is GateOutcome.CONFIRMED and decision.final_signal is signal
    assert (decision.baseline_reason, decision.gate_reason) == ("always long", "trend intact")
    assert decision.gate == "FixedGate" and decision.gate_verdict is Verdict.CONFIRM


def test_veto_blocks() -> None:
    signal, snapshot = _baseline_signal()
    decision = review_signal(signal, snapshot, FixedGate(GateVerdict(verdict=Verdict.VETO, reason="news risk")))
    assert decision.outcome is GateOutcome.VETOED and decision.final_signal is None and not decision.passed
    assert decision.baseline_signal is signal and decision.gate_reason == "news risk"


def test_no_gate_passes_the_baseline() -> None:
    signal, snapshot = _baseline_signal()
    decision = review_signal(signal, snapshot, None)
    assert decision.outcome is GateOutcome.NO_GATE and decision.final_signal is signal


@pytest.mark.parametrize("gate", [
    RaisingGate(),
    FixedGate("confirm"),
    FixedGate({"verdict": "confirm", "reason": "ok", "stop_loss": 1.0}),
    FixedGate(None),
], ids=["raises", "string", "dict", "none"])
@pytest.mark.parametrize("policy", list(GatePolicy))
def test_failed_gate_follows_the_policy_and_never_modifies(gate: object, policy: GatePolicy) -> None:
    signal, snapshot = _baseline_signal()
    before = signal.model_dump()
    decision = review_signal(signal, snapshot, gate, policy)
    assert decision.gate_verdict is None and decision.gate_reason
    if policy is GatePolicy.VETO:
        assert decision.outcome is GateOutcome.GATE_FAILED_VETOED and decision.final_signal is None
    else:
        assert decision.outcome is GateOutcome.GATE_FAILED_BASELINE and decision.final_signal is signal
    assert signal.model_dump() == before


def test_a_tampering_gate_changes_nothing() -> None:
    signal, snapshot = _baseline_signal()
    before = signal.model_dump()
    decision = review_signal(signal, snapshot, TamperingGate())
    assert decision.outcome is GateOutcome.CONFIRMED
    assert decision.final_signal is signal and signal.model_dump() == before
    assert decision.final_signal.action is SignalAction.LONG and decision.final_signal.stop_loss == signal.entry * 0.99


def test_a_verdict_cannot_carry_a_changed_signal() -> None:
    with pytest.raises(ValidationError):
        GateVerdict(verdict=Verdict.CONFIRM, reason="ok", stop_loss=1.0)
    with pytest.raises(ValidationError):
        GateVerdict(verdict="maybe", reason="ok")


def test_runner_with_gate_records_decisions_and_asks_once_per_signal() -> None:
    gate = FixedGate(GateVerdict(verdict=Verdict.VETO, reason="not now"))
    runner = StrategyRunner([_plugin("steady", _long_on_last("steady"), symbols=("XRP/USDT",))], gate=gate)
    assert runner.run(_snapshot(10)) == []
    assert [d.outcome for d in runner.last_report.gate_decisions] == [GateOutcome.VETOED]
    assert runner.state("steady", "XRP/USDT").open_action is None  # a vetoed entry opens nothing
    assert runner.run(_snapshot(10)) == [] and gate.calls == 1
    gate.verdict = GateVerdict(verdict=Verdict.CONFIRM, reason="go")
    confirmed = runner.run(_snapshot(11))
    assert len(confirmed) == 1 and runner.last_report.gate_decisions[0].final_signal is confirmed[0]

    failing = StrategyRunner([_plugin("steady", _long_on_last("steady"), symbols=("XRP/USDT",))],
                             gate=RaisingGate(), gate_policy=GatePolicy.BASELINE)
    assert len(failing.run(_snapshot(10))) == 1
    assert failing.last_report.gate_decisions[0].outcome is GateOutcome.GATE_FAILED_BASELINE


# --- the signal itself ---------------------------------------------------------------------

def test_signal_validation_and_conversion() -> None:
    signal, _ = _baseline_signal()
    intent = signal.to_trade_intent(source="technical")
    assert (intent.signal_id, intent.entry, intent.stop_loss, intent.take_profit, intent.confidence) == (
        signal.signal_id, signal.entry, signal.stop_loss, signal.take_profit, signal.strength)
    assert intent.source == "technical" and intent.direction is signal.direction
    fields = signal.model_dump()
    with pytest.raises(ValidationError, match="in order"):
        Signal(**{**fields, "stop_loss": signal.entry * 1.01})
    with pytest.raises(ValidationError, match="needs a stop-loss"):
        Signal(**{**fields, "stop_loss": None})
    with pytest.raises(ValidationError, match="finite"):
        Signal(**{**fields, "indicators": {"rsi": float("nan")}})
    with pytest.raises(ValidationError, match="stop side"):
        Signal(**{**fields, "invalidation": signal.entry * 1.01})
    with pytest.raises(ValidationError, match="CLOSE"):
        Signal(**{**fields, "action": SignalAction.CLOSE})
    close = Signal(**{**fields, "action": SignalAction.CLOSE, "stop_loss": None, "take_profit": None})
    assert close.direction is None and close.stop_distance is None
    closing = close.to_trade_intent()
    assert closing.action is IntentAction.CLOSE and closing.stop_loss is None and closing.take_profit is None


def test_signal_becomes_a_trade_intent() -> None:
    signal, _ = _baseline_signal()
    signal = signal.model_copy(update={"invalidation": signal.entry * 0.995})
    intent = signal.to_trade_intent(tested=True, max_holding_s=3600.0)
    assert (intent.intent_id, intent.signal_id, intent.strategy, intent.symbol, intent.time) == (
        signal.signal_id, signal.signal_id, "baseline", "XRP/USDT", signal.time)
    assert intent.action is IntentAction.LONG and intent.direction is Direction.LONG
    assert (intent.entry, intent.stop_loss, intent.take_profit, intent.invalidation) == (
        signal.entry, signal.stop_loss, signal.take_profit, signal.invalidation)
    assert intent.confidence == signal.strength and intent.tested and intent.max_holding_s == 3600.0
    close = Signal(**{**signal.model_dump(), "action": SignalAction.CLOSE, "stop_loss": None,
                              "take_profit": None, "invalidation": None})
    close_intent = close.to_trade_intent()
    assert close_intent.action is IntentAction.CLOSE and close_intent.stop_loss is None and not close_intent.tested
