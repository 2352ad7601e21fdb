"""Walk-forward: each strategy's parameters chosen on a train window only, judged on the test
window after it only, window after window.

The history is cut into windows (:func:`walk_forward_windows`): *rolling* (a train window of
fixed length sliding forward by the test length) or *anchored* (every train window starts at
the history's start and grows). In each window every strategy runs over the train window once
per parameter set of its grid (the kernel runs all strategies together, each on its own account:
one pass per grid position, not one per strategy); the set with the best train Sharpe is kept
(ties: the better return, then the grid's order), and that set alone is run over the test
window, warmed up on the candles before it. Nothing from a test window ever reaches a choice.

Per strategy the result holds each window's choice and its train and test returns, the
*stitched* out-of-sample equity (the test windows' minute returns chained, from 1.0) and the
in-sample/out-of-sample gap: the mean train return minus the mean test return, in percent per
window (a large positive gap: the train windows flattered the strategy).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from triplegain_core.backtest.engine import AccountResult, run_backtest
from triplegain_core.backtest.history import BacktestHistory, history_from_candles
from triplegain_core.config import Settings, StrategySettings
from triplegain_core.execution.account import strategy_account_name
from triplegain_core.model.market import US_PER_MINUTE
from triplegain_core.portfolio.metrics import MINUTES_PER_YEAR, period_returns, sharpe_ratio
from triplegain_core.strategies.registry import LoadedStrategy
from triplegain_core.strategies.selection import select_strategies

ParameterGrid = Mapping[str, Sequence[Mapping[str, Any]]]
"""Per strategy name, the parameter sets to try (each: overrides of its Config)."""

WindowReport = Callable[[int, int], None]
"""Called with (windows done, windows in all)."""


@dataclass(frozen=True, slots=True)
class Window:
    """One walk-forward window: train on the candles closing in ``(train_start_us, test_start_us]``,
    test on those closing in ``(test_start_us, test_end_us]``."""

    train_start_us: int
    test_start_us: int
    test_end_us: int


@dataclass(frozen=True, slots=True)
class WindowOutcome:
    """One strategy in one window: the parameters chosen on train, and both returns (%)."""

    window: Window
    parameters: Mapping[str, Any]
    train_return_pct: float
    train_sharpe: float | None
    test_return_pct: float


@dataclass(frozen=True, slots=True)
class StrategyWalk:
    """One strategy over every window."""

    strategy: str
    windows: tuple[WindowOutcome, ...]
    stitched_times_us: tuple[int, ...]
    stitched_equity: tuple[float, ...]

    @property
    def in_sample_pct(self) -> float:
        """The mean train return of the chosen parameters, % per window."""
        return sum(w.train_return_pct for w in self.windows) / len(self.windows)

    @property
    def out_of_sample_pct(self) -> float:
        """The mean test return, % per window."""
        return sum(w.test_return_pct for w in self.windows) / len(self.windows)

    @property
    def gap_pct(self) -> float:
        """In-sample minus out-of-sample, % per window."""
        return self.in_sample_pct - self.out_of_sample_pct

    @property
    def stitched_return_pct(self) -> float:
        """The out-of-sample return of every test window chained, %."""
        return (self.stitched_equity[-1] - 1.0) * 100 if self.stitched_equity else 0.0


@dataclass(frozen=True, slots=True)
class WalkForwardResult:
    """Every window and every strategy's walk through them."""

    windows: tuple[Window, ...]
    strategies: tuple[StrategyWalk, ...]
    anchored: bool


def walk_forward_windows(start_us: int, end_us: int, train_minutes: int, test_minutes: int,
                         anchored: bool) -> list[Window]:
    """The windows over ``[start_us, end_us)``: a first train window of ``train_minutes``, then
    test windows of ``test_minutes`` back to back (the last one only when whole)."""
    if train_minutes < 1 or test_minutes < 1:
        raise ValueError(f"train and test windows need at least a minute each, got {train_minutes} and"
                         f" {test_minutes}")
    train_us, test_us = train_minutes * US_PER_MINUTE, test_minutes * US_PER_MINUTE
    windows = []
    test_start = start_us + train_us
    while test_start + test_us <= end_us:
        windows.append(Window(start_us if anchored else test_start - train_us, test_start, test_start + test_us))
        test_start += test_us
    if not windows:
        raise ValueError(f"the history ({(end_us - start_us) // US_PER_MINUTE} minutes) is shorter than one train"
                         f" window and one test window ({train_minutes} + {test_minutes} minutes)")
    return windows


def parameter_sets(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of a grid given as parameter -> values, in the grid's order."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def walk_forward(settings: Settings, history: BacktestHistory, grids: ParameterGrid, windows: Sequence[Window],
                 *, strategies: Sequence[LoadedStrategy] | None = None, anchored: bool = False,
                 progress: WindowReport | None = None) -> WalkForwardResult:
    """Walk every strategy of ``grids`` forward through ``windows`` (see the module's docstring).

    The strategies are those ``settings`` select (or ``strategies``), each named in ``grids``; a
    strategy given no parameter sets keeps its configured parameters (a grid of one)."""
    available = {s.name: s for s in (strategies if strategies is not None
                                     else select_strategies(settings.strategies, settings.symbols).strategies)}
    unknown = sorted(set(grids) - set(available))
    if unknown:
        raise ValueError(f"no strategy {', '.join(unknown)} to walk forward; there are {', '.join(sorted(available))}")
    names = list(grids)
    # Each strategy's parameter sets, as given (what a choice is reported as) and as configured.
    sets = {name: [(dict(values), _configured(available[name], values)) for values in grids[name]]
            or [({}, available[name])] for name in names}
    # The TechnicalAgent has no grid: only the strategies walk.
    plain = settings.model_copy(update={"strategies": StrategySettings(technical_agent=False)})
    outcomes: dict[str, list[WindowOutcome]] = {name: [] for name in names}
    stitched: dict[str, tuple[list[int], list[float]]] = {name: ([], []) for name in names}
    for done, window in enumerate(windows, start=1):
        train = _slice(history, window.train_start_us, window.test_start_us)
        best: dict[str, tuple[tuple[float, float, int], tuple[dict[str, Any], LoadedStrategy], float,
                              float | None]] = {}
        for position in range(max(len(s) for s in sets.values())):
            trying = [sets[name][position] for name in names if position < len(sets[name])]
            result = run_backtest(plain, train, strategies=[strategy for _, strategy in trying])
            for candidate in trying:
                name = candidate[1].name
                sharpe, return_pct = _judge(result.account(strategy_account_name(settings.account, name)))
                key = (sharpe if sharpe is not None else -math.inf, return_pct, -position)
                if name not in best or key > best[name][0]:
                    best[name] = (key, candidate, return_pct, sharpe)
        test = _slice(history, window.train_start_us, window.test_end_us)
        # The candle closing at the test window's start was the train window's last: not traded twice.
        result = run_backtest(plain, test, strategies=[best[name][1][1] for name in names],
                              decide_from_us=window.test_start_us + 1)
        for name in names:
            account = result.account(strategy_account_name(settings.account, name))
            _, return_pct = _judge(account)
            _, (values, _), train_return, train_sharpe = best[name]
            outcomes[name].append(WindowOutcome(window, values, train_return, train_sharpe, return_pct))
            _chain(stitched[name], account)
        if progress is not None:
            progress(done, len(windows))
    walks = tuple(StrategyWalk(name, tuple(outcomes[name]), tuple(stitched[name][0]), tuple(stitched[name][1]))
                  for name in names)
    return WalkForwardResult(tuple(windows), walks, anchored)


def _configured(strategy: LoadedStrategy, values: Mapping[str, Any]) -> LoadedStrategy:
    """``strategy`` with ``values`` over its configuration (validated by its Config)."""
    config = type(strategy.config).model_validate({**strategy.config.model_dump(), **values})
    return dataclasses.replace(strategy, config=config)


def _slice(history: BacktestHistory, start_us: int, end_us: int) -> BacktestHistory:
    """The candles closing in ``(start_us, end_us]``."""
    return history_from_candles([c for c in history.candles if start_us < c.close_time_us <= end_us],
                                history.symbols)


def _judge(account: AccountResult) -> tuple[float | None, float]:
    """An account's Sharpe (annualized from minute returns) and return (%) over its curve."""
    equity = list(account.trail.curve.equity)
    if len(equity) < 2 or equity[0] <= 0:
        return None, 0.0
    return sharpe_ratio(period_returns(equity), MINUTES_PER_YEAR), (equity[-1] / equity[0] - 1) * 100


def _chain(stitched: tuple[list[int], list[float]], account: AccountResult) -> None:
    """Append a test window's curve to the stitched one, rescaled to continue where it ended."""
    times, equity = stitched
    curve = list(account.trail.curve.equity)
    if not curve or curve[0] <= 0:
        return
    level = equity[-1] if equity else 1.0
    times.extend(account.trail.curve.times_us)
    equity.extend(level * value / curve[0] for value in curve)
