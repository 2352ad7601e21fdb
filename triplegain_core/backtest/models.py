"""Model accounts in a backtest: deliberation rounds answered from recordings only.

A backtest with models holds a deliberation round every ``every_minutes`` of market time (at
each candle close on that cadence, as the hourly schedule does live), in the configured mode,
on every symbol: each context is built by the one builder live rounds use
(:func:`~triplegain_core.llm.context.market_context`) from the history's candles closed by then
and the deciding account as the kernel holds it then, so the prompt is the one a paper run
built at that market time and carries nothing later. The client only replays
(:attr:`~triplegain_core.llm.answer_cache.CacheMode.REPLAY`): an answer is served from the
recordings by its prompt hash, and a prompt never recorded stops the backtest with
:class:`MissingRecordingError` naming the model and the hash. No provider is ever called.

The decisions go to the kernel as the executor takes them: each model's and the consensus's
on their own ``llm:`` accounts, through the same risk rules and fill model. What a backtest
cannot reproduce, it leaves out and says so here: the rounds a strong signal triggered live
(only the cadence's rounds are held), the human approval (a backtest has no human: a decision
that would wait for one is traded as if approved), and the ModelSelector's weights (the vote is
unweighted, as it is before any model has a score).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from triplegain_core.backtest.history import BacktestHistory
from triplegain_core.backtest.trail import BacktestTrail
from triplegain_core.config import Settings
from triplegain_core.decisions.lifecycle import DecisionState
from triplegain_core.decisions.published import PublishedDecision, model_account
from triplegain_core.execution.kernel import TradingKernel
from triplegain_core.llm.answer_cache import AnswerCache, CacheMode
from triplegain_core.llm.client import LLMClient
from triplegain_core.llm.context import HISTORY_MINUTES, market_context
from triplegain_core.llm.deliberation_config import DeliberationMode
from triplegain_core.llm.deliberation_round import deliberate
from triplegain_core.llm.models import FailureKind, LLMCall
from triplegain_core.llm.prompts import MarketContext
from triplegain_core.llm.voting import CONSENSUS_MODEL
from triplegain_core.model.market import US_PER_MINUTE, Candle, us_to_datetime
from triplegain_core.risk.rules import RiskCheck

log = logging.getLogger(__name__)

AnswerSource = Callable[[], AbstractAsyncContextManager[AnswerCache]]
"""Opens the recorded answers for the length of a backtest (e.g. the PostgreSQL answer cache)."""

DEFAULT_ROUND_MINUTES = 60


class MissingRecordingError(LookupError):
    """A model was asked a prompt no paper run recorded: a backtest never asks a provider."""

    def __init__(self, model: str, prompt_hash: str, symbol: str, at: datetime) -> None:
        super().__init__(
            f"no recorded answer of model {model} for prompt {prompt_hash} ({symbol} at {at:%Y-%m-%d %H:%M} UTC):"
            " a backtest replays answers only and never asks a provider; record this round in a paper run"
            " (cache mode record) or run the backtest without models")
        self.model = model
        self.prompt_hash = prompt_hash


@dataclass(frozen=True, slots=True)
class ModelRounds:
    """Deliberation rounds in a backtest: where the recorded answers are, how often to ask."""

    answers: AnswerSource
    every_minutes: int = DEFAULT_ROUND_MINUTES

    def __post_init__(self) -> None:
        if not 1 <= self.every_minutes <= 24 * 60:
            raise ValueError(f"model rounds every {self.every_minutes} minutes: give 1 to 1440")

    def round_ends(self, candles: Sequence[Candle]) -> list[int]:
        """The indices of ``candles`` (stream order) after which a round is held: the last
        candle of each moment whose close falls on the cadence."""
        span = self.every_minutes * US_PER_MINUTE
        return [i for i, candle in enumerate(candles)
                if candle.close_time_us % span == 0
                and (i + 1 == len(candles) or candles[i + 1].close_time_us != candle.close_time_us)]


@dataclass
class _Calls:
    """Every call of a round, for the recordings it missed."""

    calls: list[LLMCall] = field(default_factory=list)

    async def record_call(self, call: LLMCall) -> None:
        self.calls.append(call)


class BacktestDecisions:
    """The decision lifecycle of a backtest: what the kernel made of each decision, in its trail
    already (risk checks, orders, positions); nothing is waiting to be written back."""

    def refuse(self, decision: PublishedDecision, reason: str, at: datetime) -> None:
        """A decision the kernel could not route: said in the log."""
        log.info("decision %s refused at %s: %s", decision.decision_id, at.isoformat(), reason)

    def record_outcome(self, decision: PublishedDecision, check: RiskCheck, position_id: str,
                       open_positions: Collection[str], at: datetime) -> DecisionState:
        """Executed when the risk check approved it, else rejected."""
        return DecisionState.EXECUTED if check.approved else DecisionState.REJECTED

    def track_closes(self, open_positions: Collection[str], at: datetime) -> list[str]:
        """Nothing to close: a backtest's positions live in its trail."""
        return []


@contextmanager
def model_round_runner(settings: Settings, rounds: ModelRounds, history: BacktestHistory,
                       trail: BacktestTrail) -> Iterator[ModelRoundRunner]:
    """The rounds of one backtest, over the recorded answers ``rounds`` opens, on an event loop
    of their own; everything closed on the way out."""
    with asyncio.Runner() as loop:
        source = rounds.answers()
        cache = loop.run(source.__aenter__())
        runner = ModelRoundRunner(settings, history, trail, loop, cache)
        try:
            yield runner
        finally:
            loop.run(runner.client.aclose())
            loop.run(source.__aexit__(None, None, None))


class ModelRoundRunner:
    """Holds the rounds of one backtest on one event loop (see the module)."""

    def __init__(self, settings: Settings, history: BacktestHistory, trail: BacktestTrail,
                 runner: asyncio.Runner, cache: AnswerCache) -> None:
        self._settings = settings
        self._trail = trail
        self._runner = runner
        self._calls = _Calls()
        self.client = LLMClient(settings.llm, cache=cache, cache_mode=CacheMode.REPLAY, recorder=self._calls)
        mode = settings.deliberation.mode
        # The account whose holdings the models are shown: the one this mode's decisions trade (as live).
        self._deciding = model_account(CONSENSUS_MODEL if mode is DeliberationMode.PARALLEL else mode.value)
        self._candles: dict[str, list[Candle]] = {}
        for candle in history.candles:
            self._candles.setdefault(candle.symbol, []).append(candle)
        self._closes = {symbol: [c.close_time_us for c in series] for symbol, series in self._candles.items()}

    @property
    def calls(self) -> list[LLMCall]:
        """Every call replayed so far, in the order asked."""
        return self._calls.calls

    def deliberate(self, kernel: TradingKernel, at_us: int) -> None:
        """Hold the round of market time ``at_us`` and hand its decisions to ``kernel``."""
        contexts = self._contexts(kernel, at_us)
        if not contexts:
            return
        asked = len(self._calls.calls)
        result = self._runner.run(deliberate(self.client, contexts, f"backtest-{at_us}", self._settings.deliberation))
        for call in self._calls.calls[asked:]:
            if call.failure is FailureKind.NOT_CACHED:
                raise MissingRecordingError(call.model_name, call.prompt_hash, call.symbol, us_to_datetime(at_us))
        if result.tradeable:
            kernel.on_decisions(result.tradeable)

    def _contexts(self, kernel: TradingKernel, at_us: int) -> list[MarketContext]:
        try:
            account = kernel.account(self._deciding)
        except KeyError:
            positions, balances, equity = [], {}, None  # not opened yet: live shows no holdings either
        else:
            snapshot = account.snapshot(us_to_datetime(at_us))
            balances = {} if snapshot is None else dict(snapshot.balances)
            equity = None if snapshot is None else snapshot.equity_usdt
            positions = sorted(self._trail.account(self._deciding).positions.values(),
                               key=lambda p: (p.opened_at, p.position_id))
        contexts = []
        for symbol in self._settings.symbols:
            closes = self._closes.get(symbol, [])
            end = bisect.bisect_right(closes, at_us)
            if end:
                known = self._candles[symbol][max(0, end - HISTORY_MINUTES):end]
                contexts.append(market_context(symbol, known, positions, balances, equity))
        return contexts
