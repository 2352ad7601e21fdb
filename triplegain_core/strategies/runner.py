"""The strategy runner: every enabled strategy on each of its symbols, once per cycle.

One strategy's exception (or a return that is not a valid signal for its symbol) is caught,
counted and logged, and the cycle goes on with the others. A signal already emitted on an
earlier cycle (same ``signal_id``: the same rule on the same closed candle) is not emitted
again, so a 100 ms loop over 1-minute candles does not repeat itself.

Incremental by inputs: a strategy is called again on a symbol only when the snapshot parts it
reads (its ``READS``) or its state changed since its last call there; otherwise its answer
could not differ, and the call is skipped (counted in :attr:`StrategyRunner.skipped_calls`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from triplegain_core.decisions.gate import GateDecision, GatePolicy, SignalGate, review_signal
from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.model.signals import Signal
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.registry import LoadedStrategy

log = logging.getLogger(__name__)

# Log the first failure of a strategy, then one in this many, so a strategy broken on every
# 100 ms cycle cannot flood the log; the counter keeps the exact number.
_LOG_EVERY = 1000


@dataclass(frozen=True, slots=True)
class StrategyFailure:
    """One caught failure: which strategy, on which symbol, and what went wrong."""

    strategy: str
    symbol: str
    error: str


@dataclass(slots=True)
class CycleReport:
    """Everything one cycle produced besides the signals' list itself."""

    signals: list[Signal] = field(default_factory=list)
    gate_decisions: list[GateDecision] = field(default_factory=list)
    failures: list[StrategyFailure] = field(default_factory=list)


class StrategyRunner:
    """Runs strategies over snapshots, keeping one :class:`StrategyState` per strategy and symbol.

    With a ``gate``, every new signal goes through :func:`review_signal` under ``gate_policy``
    and only those that pass are returned; each decision is in :attr:`last_report`.
    """

    def __init__(
        self,
        strategies: Iterable[LoadedStrategy],
        gate: SignalGate | None = None,
        gate_policy: GatePolicy = GatePolicy.VETO,
    ) -> None:
        self.strategies = tuple(strategies)
        names = [s.name for s in self.strategies]
        if len(names) != len(set(names)):
            raise ValueError(f"strategy names must be unique, got {names}")
        # Every snapshot part any of the strategies reads: a producer may leave out the others.
        self.reads: frozenset[str] = frozenset().union(*(s.reads for s in self.strategies))
        self.gate = gate
        self.gate_policy = gate_policy
        self.states: dict[tuple[str, str], StrategyState] = {
            (s.name, symbol): s.new_state(symbol) for s in self.strategies for symbol in s.symbols
        }
        self.failure_counts: Counter[str] = Counter()
        self.last_report = CycleReport()
        self.skipped_calls = 0
        self._input_keys: dict[tuple[str, str], tuple[object, ...]] = {}

    def state(self, strategy: str, symbol: str) -> StrategyState:
        """The state kept for ``strategy`` on ``symbol``."""
        return self.states[(strategy, symbol)]

    def _fail(self, report: CycleReport, strategy: LoadedStrategy, symbol: str, error: str) -> None:
        self.failure_counts[strategy.name] += 1
        count = self.failure_counts[strategy.name]
        report.failures.append(StrategyFailure(strategy.name, symbol, error))
        if count == 1 or count % _LOG_EVERY == 0:
            log.error("strategy %s failed on %s (%d failures so far): %s", strategy.name, symbol, count, error)

    def prime(self, snapshot: MarketSnapshot) -> None:
        """Take ``snapshot`` as already decided on, without calling any strategy.

        Each strategy is called again only once the parts it reads change: a loop that filled
        its history at start must not signal on candles that closed before it ran.
        """
        fingerprints: dict[frozenset[str], tuple[object, ...]] = {}
        for strategy in self.strategies:
            fingerprint = fingerprints.get(strategy.reads)
            if fingerprint is None:
                fingerprint = fingerprints[strategy.reads] = snapshot.fingerprint(strategy.reads)
            for symbol in strategy.symbols:
                state = self.states[(strategy.name, symbol)]
                self._input_keys[(strategy.name, symbol)] = (fingerprint, state.signals_emitted, state.last_signal_id,
                                                             state.open_action)

    def run(self, snapshot: MarketSnapshot, asleep: Collection[tuple[str, str]] = ()) -> list[Signal]:
        """The new signals of this cycle, in strategy then symbol order. The (strategy, symbol)
        pairs ``asleep`` are known not to signal on this snapshot (their ``SIGNAL_CANDIDATES``):
        they are not called."""
        report = CycleReport()
        fingerprints: dict[frozenset[str], tuple[object, ...]] = {}
        for strategy in self.strategies:
            fingerprint = fingerprints.get(strategy.reads)
            if fingerprint is None:
                fingerprint = fingerprints[strategy.reads] = snapshot.fingerprint(strategy.reads)
            for symbol in strategy.symbols:
                if asleep and (strategy.name, symbol) in asleep:
                    continue
                state = self.states[(strategy.name, symbol)]
                key = (fingerprint, state.signals_emitted, state.last_signal_id, state.open_action)
                if self._input_keys.get((strategy.name, symbol)) == key:
                    self.skipped_calls += 1
                    continue
                # Kept even when the call fails: a pure function fails again on the same inputs.
                self._input_keys[(strategy.name, symbol)] = key
                try:
                    signal = strategy.generate(snapshot, strategy.config, state)
                except Exception as exc:  # a strategy is a plugin: contain anything it raises
                    self._fail(report, strategy, symbol, f"{type(exc).__name__}: {exc}")
                    continue
                if signal is None:
                    continue
                if (not isinstance(signal, Signal) or signal.symbol != symbol
                        or signal.strategy != strategy.name):
                    self._fail(report, strategy, symbol,
                               f"returned {signal!r:.200}, not a {strategy.name} signal on {symbol}")
                    continue
                if signal.signal_id == state.last_signal_id:
                    continue
                if self.gate is not None:
                    decision = review_signal(signal, snapshot, self.gate, self.gate_policy)
                    report.gate_decisions.append(decision)
                    if not decision.passed:
                        # Seen, so the gate is not asked again about the same candle; no intent opened.
                        state.last_signal_id = signal.signal_id
                        continue
                state.record(signal)
                report.signals.append(signal)
        self.last_report = report
        return report.signals
