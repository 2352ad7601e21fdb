"""The confirmation gate off the trading loop: a gated signal waits, the loop does not.

A gate (an LLM, answering in seconds) cannot sit inside a 100 ms loop. The loop hands each
signal of a gated strategy to :meth:`GateQueue.submit` and goes on; worker threads put it
through :func:`~triplegain_core.decisions.gate.review_signal` (which never raises: a failed or
late gate is resolved by the GatePolicy, veto by default); later cycles :meth:`collect` the
decisions, and only a passed one is traded, still through the RiskAgent, at that moment's market.
A signal whose review is not back within ``max_wait_s`` is vetoed as stale.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

from triplegain_core.decisions.gate import GateDecision, GateOutcome, GatePolicy, SignalGate, review_signal
from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.model.signals import Signal

STALE_REASON = "gate answered too late: the signal is stale"


@dataclass(slots=True)
class _Pending:
    signal: Signal
    snapshot: MarketSnapshot
    future: Future[GateDecision]
    submitted: float


class GateQueue:
    """Reviews signals with ``gate`` in ``workers`` threads; decisions are collected in order."""

    def __init__(self, gate: SignalGate, policy: GatePolicy = GatePolicy.VETO, *, workers: int = 2,
                 max_wait_s: float = 30.0) -> None:
        if max_wait_s <= 0:
            raise ValueError(f"max_wait_s must be positive, got {max_wait_s}")
        self._gate = gate
        self._policy = policy
        self._max_wait_s = max_wait_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gate")
        self._pending: list[_Pending] = []

    @property
    def pending(self) -> int:
        """Signals still waiting for their verdict."""
        return len(self._pending)

    def awaiting(self) -> set[str]:
        """The strategies with a signal still waiting for its verdict."""
        return {item.signal.strategy for item in self._pending}

    def submit(self, signal: Signal, snapshot: MarketSnapshot) -> None:
        """Start reviewing ``signal``; returns at once."""
        future = self._pool.submit(review_signal, signal, snapshot, self._gate, self._policy)
        self._pending.append(_Pending(signal, snapshot, future, time.monotonic()))

    def collect(self) -> list[GateDecision]:
        """The decisions reached since the last call, in submission order; a review running
        past ``max_wait_s`` is abandoned and vetoed as stale (its late answer is ignored)."""
        now = time.monotonic()
        decided: list[GateDecision] = []
        waiting: list[_Pending] = []
        for item in self._pending:
            if item.future.done():
                decided.append(item.future.result())
            elif now - item.submitted > self._max_wait_s:
                item.future.cancel()
                decided.append(_stale(item))
            else:
                waiting.append(item)
        self._pending = waiting
        return decided

    def close(self) -> None:
        """Stop the workers (reviews not started are dropped, those in flight are waited for,
        each bounded by the gate's own deadline), then close the gate if it holds resources."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        close_gate = getattr(self._gate, "close", None)
        if callable(close_gate):
            close_gate()

    def __enter__(self) -> GateQueue:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _stale(item: _Pending) -> GateDecision:
    decision = review_signal(item.signal, item.snapshot, None)
    return decision.model_copy(update={
        "gate": "stale", "gate_reason": STALE_REASON, "outcome": GateOutcome.GATE_FAILED_VETOED,
        "final_signal": None,
    })
