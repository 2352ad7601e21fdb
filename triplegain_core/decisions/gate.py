"""The confirmation gate ("E3 + AI gate"): a rules baseline decides, a gate may only veto or confirm.

A gate (later an LLM) sees a *copy* of the baseline's signal and answers a
:class:`GateVerdict`. Whatever it does, the signal that goes on is the baseline's own object,
unchanged, or nothing: a gate can never alter direction, size, entry, stop or take-profit.
When the gate fails (raises, or answers anything but a GateVerdict) the :class:`GatePolicy`
decides: ``VETO`` (the default, fail closed: no trade without a confirmation) or ``BASELINE``
(fail open: the baseline's signal goes on as if there were no gate). Every decision is a
:class:`GateDecision` carrying the baseline's reason and the gate's.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.model.market import us_to_datetime
from triplegain_core.model.signals import Signal

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    """A gate's answer."""

    CONFIRM = "confirm"
    VETO = "veto"


class GateVerdict(BaseModel):
    """What a gate says about one signal, and why. It has no room for a changed signal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: Verdict
    reason: str = Field(min_length=1)


@runtime_checkable
class SignalGate(Protocol):
    """Reviews a baseline signal; may only confirm or veto it."""

    def review(self, signal: Signal, snapshot: MarketSnapshot) -> GateVerdict: ...


class GatePolicy(StrEnum):
    """What a failed gate (exception, or not a GateVerdict) means."""

    VETO = "veto"
    BASELINE = "baseline"


class GateOutcome(StrEnum):
    """How a decision ended."""

    NO_GATE = "no_gate"
    CONFIRMED = "confirmed"
    VETOED = "vetoed"
    GATE_FAILED_VETOED = "gate_failed_vetoed"
    GATE_FAILED_BASELINE = "gate_failed_baseline"


class GateDecision(BaseModel):
    """The audit record of one baseline signal passing (or not) through the gate."""

    model_config = ConfigDict(frozen=True)

    signal_id: str
    strategy: str
    symbol: str
    time: datetime
    baseline_signal: Signal
    baseline_reason: str
    gate: str | None
    gate_verdict: Verdict | None
    gate_reason: str
    outcome: GateOutcome
    final_signal: Signal | None

    @property
    def passed(self) -> bool:
        """Whether the baseline's signal goes on."""
        return self.final_signal is not None


def _decision(
    signal: Signal,
    snapshot: MarketSnapshot,
    gate: str | None,
    verdict: Verdict | None,
    reason: str,
    outcome: GateOutcome,
    passes: bool,
) -> GateDecision:
    return GateDecision(
        signal_id=signal.signal_id,
        strategy=signal.strategy,
        symbol=signal.symbol,
        time=us_to_datetime(snapshot.ts_us),
        baseline_signal=signal,
        baseline_reason=signal.reason,
        gate=gate,
        gate_verdict=verdict,
        gate_reason=reason,
        outcome=outcome,
        final_signal=signal if passes else None,
    )


def review_signal(
    signal: Signal,
    snapshot: MarketSnapshot,
    gate: SignalGate | None,
    policy: GatePolicy = GatePolicy.VETO,
) -> GateDecision:
    """Put ``signal`` through ``gate`` under ``policy``; never raises because of the gate."""
    if gate is None:
        return _decision(signal, snapshot, None, None, "no gate configured", GateOutcome.NO_GATE, True)
    gate_name = type(gate).__name__
    failure: str | None = None
    try:
        # The gate gets a deep copy: even a gate that mutates what it is given changes nothing here.
        verdict = gate.review(signal.model_copy(deep=True), snapshot)
    except Exception as exc:  # the gate is untrusted (an LLM client, a plugin): contain anything
        failure = f"gate raised {type(exc).__name__}: {exc}"
    else:
        if not isinstance(verdict, GateVerdict):
            failure = f"gate answered {type(verdict).__name__}, not a GateVerdict: {verdict!r:.200}"
    if failure is not None:
        log.warning("gate %s failed on %s: %s", gate_name, signal.signal_id, failure)
        if policy is GatePolicy.BASELINE:
            return _decision(signal, snapshot, gate_name, None, failure, GateOutcome.GATE_FAILED_BASELINE, True)
        return _decision(signal, snapshot, gate_name, None, failure, GateOutcome.GATE_FAILED_VETOED, False)
    confirmed = verdict.verdict is Verdict.CONFIRM
    outcome = GateOutcome.CONFIRMED if confirmed else GateOutcome.VETOED
    return _decision(signal, snapshot, gate_name, verdict.verdict, verdict.reason, outcome, confirmed)
