"""One backtest: the live trading kernel over a stored history, in market time, nothing else.

The kernel is the executor's own (:class:`~triplegain_core.execution.kernel.TradingKernel`): the
same TechnicalAgent, strategies, risk rules, fees, slippage and fill model, every account the
configuration trades. Only its host differs: instead of Redis every 100 ms, the history's closed
1m candles moment by moment, with the market guards on the history's own clock. No WebSocket, no
Redis, no PostgreSQL, no wall clock: the same configuration and the same candles give the same
trades, byte for byte (:attr:`BacktestResult.trades_hash`), on any machine at any speed.

What defines a run is its configuration (:func:`backtest_config`, the trading part of the
settings and the version of every strategy it runs) and its data (the history's ``data_hash``):
both are hashed and stored, so the run can be reproduced and checked from what is stored.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from enum import StrEnum
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from triplegain_core.backtest.history import BacktestHistory
from triplegain_core.backtest.models import BacktestDecisions, ModelRounds, model_round_runner
from triplegain_core.backtest.trail import AccountTrail, BacktestTrail
from triplegain_core.config import Settings
from triplegain_core.decisions.published import LLM_ACCOUNT_PREFIX
from triplegain_core.execution.account import strategy_account_name
from triplegain_core.execution.kernel import TradingKernel
from triplegain_core.llm.models import LLMCall
from triplegain_core.model.market import Candle
from triplegain_core.risk.guards import ReplayClock
from triplegain_core.strategies.registry import LoadedStrategy
from triplegain_core.strategies.selection import select_strategies

# The settings that decide what a backtest trades; the rest (servers, paths) never matter to it.
TRADING_FIELDS = frozenset({"symbols", "account", "starting_balances", "fee_rate", "slippage", "risk", "guards",
                            "strategies", "deliberation"})
# Where a configuration keeps the cadence of its model rounds (absent: no models).
MODEL_ROUNDS_KEY = "model_rounds_every_minutes"
# Candles handed to the kernel at once (a progress report after each batch).
BATCH_CANDLES = 5_000
# What the TechnicalAgent costs a backtest worker, in strategies (for sharing them out).
AGENT_LOAD = 2

ProgressReport = Callable[[int, int], None]
"""Called with (candles done, candles in all) as a backtest runs."""


class AccountKind(StrEnum):
    """Who trades an account (or, for a baseline, what it holds)."""

    TECHNICAL = "technical"
    STRATEGY = "strategy"
    MODEL = "model"
    BASELINE = "baseline"


@dataclass(frozen=True, slots=True)
class AccountResult:
    """One account of a backtest (or a baseline) and its trail."""

    name: str
    kind: AccountKind
    trail: AccountTrail


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """What a backtest did, and what it ran on."""

    config: Mapping[str, Any]
    config_hash: str
    history: BacktestHistory
    accounts: tuple[AccountResult, ...]
    trades_hash: str
    seconds: float
    # Every model call the rounds replayed (none without models), in the order asked.
    model_calls: tuple[LLMCall, ...] = ()

    def account(self, name: str) -> AccountResult:
        """The account ``name``; KeyError naming the accounts there are."""
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(f"no account {name!r}; accounts: {', '.join(a.name for a in self.accounts)}")


def backtest_config(settings: Settings, strategies: Iterable[LoadedStrategy] | None = None,
                    model_rounds_minutes: int | None = None) -> dict[str, Any]:
    """The configuration a run is defined by: the trading settings, each strategy's version and
    parameters (``strategies``, default: those the settings select) and, with model rounds
    (every ``model_rounds_minutes``), the models asked (``llm``) and that cadence."""
    config = settings.model_dump(mode="json", include=set(TRADING_FIELDS))
    if strategies is None:
        strategies = select_strategies(settings.strategies, settings.symbols).strategies
    config["strategy_versions"] = {s.name: s.version for s in strategies}
    config["strategy_parameters"] = {s.name: s.config.model_dump(mode="json") for s in strategies}
    if model_rounds_minutes is not None:
        config["llm"] = settings.llm.model_dump(mode="json")
        config[MODEL_ROUNDS_KEY] = model_rounds_minutes
    return config


def config_hash(config: Mapping[str, Any]) -> str:
    """The sha256 of ``config`` as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def settings_of(config: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """The settings a stored configuration was made from (what :func:`backtest_config` kept),
    the rest (servers, data folder) taken from ``base``."""
    values = {} if base is None else base.model_dump(exclude=set(TRADING_FIELDS))
    values.update({key: value for key, value in config.items() if key in TRADING_FIELDS or key == "llm"})
    return Settings.model_validate(values)


def model_rounds_of(config: Mapping[str, Any]) -> int | None:
    """The cadence of model rounds (minutes) a stored configuration ran with; None: no models."""
    minutes = config.get(MODEL_ROUNDS_KEY)
    return None if minutes is None else int(minutes)


def run_backtest(settings: Settings, history: BacktestHistory, *, strategies: Iterable[LoadedStrategy] | None = None,
                 decide_from_us: int | None = None, progress: ProgressReport | None = None,
                 models: ModelRounds | None = None, workers: int = 1) -> BacktestResult:
    """Run every account ``settings`` trades over ``history``; see the module's docstring.

    ``strategies`` replace the configured ones (e.g. other parameters); with ``decide_from_us``
    the candles closing before it only warm the kernel up (as after a restart: nothing decided,
    no account valued), and the accounts trade from there on. With ``models``, the configured
    models deliberate on their cadence from recorded answers only (see
    :mod:`~triplegain_core.backtest.models`), each on its own account.

    With ``workers`` above 1 (and no models), the strategies' accounts are shared out among that
    many processes, each running the kernel over the whole history (the accounts of a backtest
    trade apart: only the market and its guards, the same in every process, are common); the
    result is the same, fill for fill, as in one process.
    """
    started = time.perf_counter()
    missing = sorted(set(settings.symbols) - set(history.symbols))
    if missing:
        # A pair the configuration trades but the history lacks would never get a price.
        settings = settings.model_copy(update={"symbols": tuple(s for s in settings.symbols if s in history.symbols)})
    if workers > 1 and models is None:
        chosen = tuple(select_strategies(settings.strategies, settings.symbols).strategies if strategies is None
                       else strategies)
        if len(chosen) > 1:
            return _run_forked(settings, history, chosen, decide_from_us, progress, min(workers, len(chosen)),
                               started)
    trail = BacktestTrail()
    lifecycle = BacktestDecisions()
    kernel = TradingKernel(settings, trail, strategies=strategies, clock=ReplayClock(), decisions=lifecycle)
    config = backtest_config(settings, kernel.strategies, None if models is None else models.every_minutes)
    candles = history.candles
    first = 0
    if decide_from_us is not None:
        first = next((i for i, c in enumerate(candles) if c.close_time_us >= decide_from_us), len(candles))
        warm: dict[str, list[Candle]] = {}
        for candle in candles[:first]:
            warm.setdefault(candle.symbol, []).append(candle)
        kernel.warm({symbol: series[-kernel.history_minutes:] for symbol, series in warm.items()})
    total = len(candles) - first
    # Batches end at the end of a moment (the candles closing together are decided together,
    # whatever the batch size) and where a round is held, so it sees the market of its moment.
    rounds_after = set() if models is None else {i + 1 for i in models.round_ends(candles) if i >= first}
    ends = sorted({*(_moment_end(candles, end) for end in range(first + BATCH_CANDLES, len(candles), BATCH_CANDLES)),
                   *rounds_after, len(candles)} - {first})
    with ExitStack() as stack:
        rounds = None if models is None else stack.enter_context(model_round_runner(settings, models, history, trail))
        start = first
        for end in ends:
            kernel.on_candles(candles[start:end])
            if rounds is not None and end in rounds_after:
                rounds.deliberate(kernel, candles[end - 1].close_time_us)
            if progress is not None:
                progress(end - first, total)
            start = end
    accounts = tuple(AccountResult(account.name, _kind(account.name, settings), trail.account(account.name))
                     for account in kernel.accounts)
    return BacktestResult(config=config, config_hash=config_hash(config), history=history, accounts=accounts,
                          trades_hash=trades_hash(accounts), seconds=time.perf_counter() - started,
                          model_calls=() if rounds is None else tuple(rounds.calls))


def _run_forked(settings: Settings, history: BacktestHistory, strategies: tuple[LoadedStrategy, ...],
                decide_from_us: int | None, progress: ProgressReport | None, workers: int,
                started: float) -> BacktestResult:
    """:func:`run_backtest` with the strategies dealt out among ``workers`` forked processes;
    the first also trades the base account (the TechnicalAgent's) and reports the progress."""
    context = multiprocessing.get_context("fork")  # the history and the strategies are inherited, not sent
    no_agent = settings.strategies.model_copy(update={"technical_agent": False})
    quiet = settings.model_copy(update={"strategies": no_agent})
    # Dealt to the least loaded worker in turn; the first also runs the TechnicalAgent, which
    # costs about two strategies.
    loads = [AGENT_LOAD if settings.strategies.technical_agent else 0] + [0] * (workers - 1)
    groups: list[list[LoadedStrategy]] = [[] for _ in range(workers)]
    for strategy in strategies:
        lightest = loads.index(min(loads))
        groups[lightest].append(strategy)
        loads[lightest] += 1
    parts: list[tuple[Connection, BaseProcess]] = []
    for index in range(workers):
        receiving, sending = context.Pipe(duplex=False)
        worker = context.Process(target=_forked_part, daemon=True, args=(
            sending, settings if index == 0 else quiet, history, tuple(groups[index]), decide_from_us,
            index == 0 and progress is not None))
        worker.start()
        sending.close()
        parts.append((receiving, worker))
    found: dict[str, AccountResult] = {}
    try:
        for index, (receiving, _) in enumerate(parts):
            while True:
                try:
                    kind, payload = receiving.recv()
                except EOFError:
                    raise RuntimeError(f"backtest worker {index} ended without a result") from None
                if kind == "progress":
                    assert progress is not None
                    progress(*payload)
                    continue
                if kind == "error":
                    raise RuntimeError(f"backtest worker {index} failed:\n{payload}")
                # The other workers' base accounts are copies that traded nothing: the first's counts.
                found.update((account.name, account) for account in payload
                             if index == 0 or account.name != settings.account)
                break
    finally:
        for receiving, process in parts:
            receiving.close()
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    accounts = (found[settings.account], *(found[strategy_account_name(settings.account, s.name)] for s in strategies))
    config = backtest_config(settings, strategies)
    return BacktestResult(config=config, config_hash=config_hash(config), history=history, accounts=accounts,
                          trades_hash=trades_hash(accounts), seconds=time.perf_counter() - started)


def _forked_part(sending: Connection, settings: Settings, history: BacktestHistory,
                 strategies: tuple[LoadedStrategy, ...], decide_from_us: int | None, report: bool) -> None:
    """One worker of :func:`_run_forked`: its accounts' results, or what went wrong, on ``sending``."""
    try:
        def progress(done: int, total: int) -> None:
            sending.send(("progress", (done, total)))

        result = run_backtest(settings, history, strategies=strategies, decide_from_us=decide_from_us,
                              progress=progress if report else None)
        sending.send(("result", result.accounts))
    except BaseException:
        sending.send(("error", traceback.format_exc()))
    finally:
        sending.close()


def _moment_end(candles: Sequence[Candle], end: int) -> int:
    """``end`` moved past the candles closing with the one before it."""
    while 0 < end < len(candles) and candles[end].close_time_us == candles[end - 1].close_time_us:
        end += 1
    return end


def trades_hash(accounts: tuple[AccountResult, ...]) -> str:
    """The sha256 of every account's fills (ids, times, sides, sizes, prices, fees: exact floats)."""
    digest = hashlib.sha256()
    for account in accounts:
        for fill in account.trail.fills:
            digest.update(f"{fill.account}|{fill.fill_id}|{fill.time.isoformat()}|{fill.side.value}|"
                          f"{fill.quantity!r}|{fill.price!r}|{fill.fee!r}\n".encode())
    return digest.hexdigest()


def _kind(name: str, settings: Settings) -> AccountKind:
    if name == settings.account:
        return AccountKind.TECHNICAL
    if name.startswith(LLM_ACCOUNT_PREFIX):
        return AccountKind.MODEL
    return AccountKind.STRATEGY
