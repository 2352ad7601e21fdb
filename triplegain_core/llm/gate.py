"""Gate mode: an LLM confirms or vetoes a rules-baseline signal, and can do nothing else.

The model is shown the baseline's signal and the market and answers, as always, a
TradingDecision for the signal's symbol, validated like any other. Only two things are read from
it: its action and its confidence. The same action as the signal at or above ``min_confidence``
confirms; any other valid answer (HOLD included) vetoes. Its sizes, levels and leverage are
ignored: the signal that goes on is the baseline's own (see
:func:`~triplegain_core.decisions.gate.review_signal`).

An invalid, failed or late answer is not a verdict: :class:`LLMSignalGate` raises
:class:`GateAnswerError`, and ``review_signal`` resolves it by its :class:`GatePolicy` (veto by
default). So no model text ever becomes an order by itself.

:class:`LLMGateJudge` is the async core (for callers on an event loop); :class:`LLMSignalGate`
is the synchronous :class:`~triplegain_core.decisions.gate.SignalGate` the StrategyRunner calls,
running the judge on its own event loop thread, bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import uuid
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from triplegain_core.decisions.gate import GateVerdict, Verdict
from triplegain_core.llm.answers import DecisionParser, StructuredResult
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.prompts import MarketContext, Prompt, PromptStyle, build_prompt, system_prompt
from triplegain_core.llm.trading_decision import Action, TradingDecision
from triplegain_core.marketdata.snapshot import MarketSnapshot
from triplegain_core.model.market import Candle, us_to_datetime
from triplegain_core.model.signals import Signal, SignalAction

T = TypeVar("T")

GATE_CANDLES = 30
# The thread waits a little past the client's own deadline, which normally fires first.
WAIT_GRACE_S = 2.0

_CONFIRMING_ACTION = {SignalAction.LONG: Action.LONG, SignalAction.SHORT: Action.SHORT,
                      SignalAction.CLOSE: Action.CLOSE}

GATE_INSTRUCTIONS = """You are reviewing a signal produced by a rules-based strategy (in the user message).
Answer with your own decision for its symbol, in the JSON format above:
- the same action as the signal (LONG, SHORT or CLOSE) confirms it;
- any other action (HOLD included) vetoes it.
You cannot change the signal: its size, levels and leverage are set by the rules; for LONG or
SHORT repeat the signal's entry, stop_loss and take_profit. Say in "reasoning" why."""


class GateAnswerError(RuntimeError):
    """The model gave no valid verdict (rejected, failed or late): the GatePolicy decides."""


class GateJudgement(BaseModel):
    """One LLM review of one baseline signal, for the audit trail.

    ``verdict`` is None when the model gave no valid answer; ``reason`` then says why.
    """

    model_config = ConfigDict(frozen=True)

    signal_id: str
    model: str
    verdict: Verdict | None
    reason: str = Field(min_length=1)
    decision: TradingDecision | None
    turn: StructuredResult[TradingDecision]

    def to_gate_verdict(self) -> GateVerdict:
        """The GateVerdict for ``review_signal``; raises GateAnswerError without a valid verdict."""
        if self.verdict is None:
            raise GateAnswerError(f"{self.model} gave no valid verdict on {self.signal_id}: {self.reason}")
        return GateVerdict(verdict=self.verdict, reason=self.reason)


def gate_prompt(signal: Signal, snapshot: MarketSnapshot, style: PromptStyle = PromptStyle.CONSERVATIVE,
                token_budget: int = 6_000) -> Prompt:
    """The prompt showing ``signal`` and the snapshot's recent candles of its symbol and timeframe."""
    window = snapshot.candles.get((signal.symbol, signal.timeframe))
    candles: tuple[Candle, ...] = ()
    if window is not None and len(window):
        tail = window.tail(GATE_CANDLES)
        candles = tuple(
            Candle(signal.symbol, signal.timeframe, int(tail.open_time_us[i]), float(tail.open[i]),
                   float(tail.high[i]), float(tail.low[i]), float(tail.close[i]), float(tail.volume[i]), 0)
            for i in range(len(tail))
        )
    context = MarketContext(
        symbol=signal.symbol, time=us_to_datetime(snapshot.ts_us),
        price=snapshot.prices.get(signal.symbol, signal.entry), candles=candles,
        indicators=dict(signal.indicators),
    )
    base = build_prompt(context, style, token_budget)
    levels = (f"entry {signal.entry:.8g}" if signal.action is SignalAction.CLOSE else
              f"entry {signal.entry:.8g} stop_loss {signal.stop_loss:.8g} take_profit {signal.take_profit:.8g}")
    user = (f"{base.user}\n\n## Signal under review\n"
            f"{signal.strategy} {signal.strategy_version} on {signal.timeframe}: {signal.action.value.upper()}"
            f" {signal.symbol} strength {signal.strength:.2f}, {levels}\nRule's reason: {signal.reason[:300]}")
    system = f"{system_prompt(style)}\n\n{GATE_INSTRUCTIONS}"
    return Prompt(style=style, system=system, user=user,
                  estimated_tokens=base.estimated_tokens + len(GATE_INSTRUCTIONS) // 4 + 80,
                  trimmed=base.trimmed)


class LLMGateJudge:
    """Asks one model (the fallback chain is not used: the gate's model is chosen) about signals."""

    def __init__(self, client: LLMClient, model_name: str, *, min_confidence: float = 0.6,
                 style: PromptStyle = PromptStyle.CONSERVATIVE, deadline_s: float = 10.0) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be within 0..1, got {min_confidence}")
        self._client = client
        self._model = model_name
        self._min_confidence = min_confidence
        self._style = style
        self._deadline_s = deadline_s

    async def judge(self, signal: Signal, snapshot: MarketSnapshot) -> GateJudgement:
        """The model's verdict on ``signal`` (None with the reason when it gave no valid answer)."""
        prompt = gate_prompt(signal, snapshot, self._style, self._client.settings.prompt_token_budget)
        turn = await self._client.ask_for(
            self._model, prompt, DecisionParser(signal.symbol), symbol=signal.symbol,
            # Unique per review: a signal reviewed again (after a restart) keeps both records.
            request_id=f"gate:{signal.signal_id}:{uuid.uuid4().hex[:8]}", deadline_s=self._deadline_s,
        )
        decision = turn.answer
        if decision is None:
            return GateJudgement(signal_id=signal.signal_id, model=self._model, verdict=None,
                                 reason=turn.why_not(), decision=None, turn=turn)
        wanted = _CONFIRMING_ACTION[signal.action]
        if decision.action is not wanted:
            verdict, reason = Verdict.VETO, f"model answers {decision.action.value}, signal is {wanted.value}"
        elif decision.confidence < self._min_confidence:
            verdict, reason = Verdict.VETO, (f"model agrees at confidence {decision.confidence:.2f}"
                                             f" < {self._min_confidence:.2f}")
        else:
            verdict, reason = Verdict.CONFIRM, f"model agrees at confidence {decision.confidence:.2f}"
        return GateJudgement(signal_id=signal.signal_id, model=self._model, verdict=verdict,
                             reason=f"{reason}: {decision.reasoning[:200]}", decision=decision, turn=turn)


class LLMSignalGate:
    """The synchronous SignalGate over an LLM: the StrategyRunner's ``gate``.

    ``client_factory`` builds the LLMClient on the gate's own event loop thread (the SDKs' HTTP
    clients belong to the loop that made them). ``review`` blocks for at most ``deadline_s``
    (plus a small grace); every judgement is kept in ``judgements``. Close it (or use ``with``).
    """

    def __init__(self, client_factory: Callable[[], LLMClient], model_name: str, *,
                 min_confidence: float = 0.6, style: PromptStyle = PromptStyle.CONSERVATIVE,
                 deadline_s: float = 10.0) -> None:
        self._deadline_s = deadline_s
        self.judgements: list[GateJudgement] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="llm-gate", daemon=True)
        self._thread.start()
        try:
            self._client = self._run(self._open(client_factory), timeout=30.0)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            raise
        self._judge = LLMGateJudge(self._client, model_name, min_confidence=min_confidence,
                                   style=style, deadline_s=deadline_s)

    @staticmethod
    async def _open(client_factory: Callable[[], LLMClient]) -> LLMClient:
        client = client_factory()
        await client.__aenter__()
        return client

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def review(self, signal: Signal, snapshot: MarketSnapshot) -> GateVerdict:
        """Confirm or veto ``signal``; raises GateAnswerError when the model gave no valid verdict."""
        future = asyncio.run_coroutine_threadsafe(self._judge.judge(signal, snapshot), self._loop)
        try:
            judgement = future.result(self._deadline_s + WAIT_GRACE_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise GateAnswerError(f"no verdict on {signal.signal_id} within {self._deadline_s:g} s") from None
        self.judgements.append(judgement)
        return judgement.to_gate_verdict()

    def close(self) -> None:
        """Close the client and stop the gate's loop thread."""
        if not self._loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> LLMSignalGate:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
