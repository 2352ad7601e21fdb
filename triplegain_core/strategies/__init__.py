"""Trading strategies as plugins: the contract, discovery, the runner and the confirmation gate.

Built-in strategies live in :mod:`triplegain_core.strategies.builtin`; third-party ones are
found through the ``triplegain.strategies`` entry-point group. See
:mod:`triplegain_core.strategies.interface` for the contract.
"""

from triplegain_core.strategies.gate import GateDecision, GatePolicy, GateVerdict, SignalGate, Verdict, review_signal
from triplegain_core.strategies.interface import StrategyState
from triplegain_core.strategies.registry import LoadedStrategy, LoadReport, StrategyCatalog, discover_strategies
from triplegain_core.strategies.runner import CycleReport, StrategyRunner
from triplegain_core.strategies.signal import SignalAction, StrategySignal

__all__ = [
    "CycleReport",
    "GateDecision",
    "GatePolicy",
    "GateVerdict",
    "LoadReport",
    "LoadedStrategy",
    "SignalAction",
    "SignalGate",
    "StrategyCatalog",
    "StrategyRunner",
    "StrategySignal",
    "StrategyState",
    "Verdict",
    "discover_strategies",
    "review_signal",
]
