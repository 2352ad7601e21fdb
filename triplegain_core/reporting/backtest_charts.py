"""Pictures of a backtest: every account's and baseline's equity and drawdown on one chart, one
account's trades on the price chart, a walk-forward's windows with its out-of-sample equity, and
the Monte Carlo fans of the best account.

Drawn with matplotlib's Figure API (no pyplot global state), to PNG files the caller names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from triplegain_core.backtest.engine import AccountKind, AccountResult
from triplegain_core.backtest.history import BacktestHistory
from triplegain_core.backtest.leaderboard import Scorecard
from triplegain_core.backtest.robustness import Robustness
from triplegain_core.backtest.walk_forward import WalkForwardResult
from triplegain_core.model.market import datetime_to_us
from triplegain_core.model.signals import Direction

# Beyond this many accounts the legend would hide the chart: the best and worst are named.
LEGEND_ACCOUNTS = 14


def plot_equity_curves(accounts: Sequence[AccountResult], path: Path, title: str = "Backtest") -> Path:
    """Each account's return (%) over time, baselines dashed, and its drawdown below; ``path`` returned."""
    drawn = [a for a in accounts if len(a.trail.curve.equity) > 1]
    if not drawn:
        raise ValueError("no account has an equity curve to draw")
    figure = Figure(figsize=(12, 8), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    # Twenty distinct colours: the default cycle of ten repeats within a dozen accounts.
    tab20 = colormaps["tab20"]
    top.set_prop_cycle(color=[tab20(i) for i in range(tab20.N)])
    finals = []
    for account in drawn:
        equity = np.frombuffer(account.trail.curve.equity, dtype=float)
        times = pd.to_datetime(np.frombuffer(account.trail.curve.times_us, dtype=np.int64), unit="us", utc=True)
        returns = (equity / equity[0] - 1) * 100
        peak = np.maximum.accumulate(equity)
        style = "--" if account.kind is AccountKind.BASELINE else "-"
        width = 1.8 if account.kind in (AccountKind.BASELINE, AccountKind.TECHNICAL) else 1.0
        (line,) = top.plot(times, returns, linestyle=style, linewidth=width, label=account.name)
        bottom.plot(times, (equity / peak - 1) * 100, linestyle=style, linewidth=0.8, color=line.get_color())
        finals.append((float(returns[-1]), line))
    top.axhline(0.0, color="grey", linewidth=0.8)
    top.set_ylabel("return (%)")
    top.set_title(title)
    ranked = sorted(finals, key=lambda item: -item[0])
    if len(ranked) > LEGEND_ACCOUNTS:
        half = LEGEND_ACCOUNTS // 2
        ranked = ranked[:half] + ranked[-half:]
    top.legend(handles=[line for _, line in ranked], loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    bottom.set_ylabel("drawdown (%)")
    bottom.set_xlabel("time (UTC)")
    return _saved(figure, path, top, bottom, dates=True)


def plot_trades(history: BacktestHistory, account: AccountResult, symbol: str, path: Path) -> Path:
    """``symbol``'s closes with ``account``'s entries (triangles: up long, down short) and exits
    (crosses: green a gain, red a loss) on them; ``path`` returned."""
    candles = [c for c in history.candles if c.symbol == symbol]
    if not candles:
        raise ValueError(f"the history has no {symbol} candle")
    figure = Figure(figsize=(12, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    times = pd.to_datetime([c.close_time_us for c in candles], unit="us", utc=True)
    axes.plot(times, [c.close for c in candles], color="black", linewidth=0.8, label=symbol)
    positions = [p for p in account.trail.positions.values() if p.symbol == symbol]
    for direction, marker, colour in ((Direction.LONG, "^", "tab:blue"), (Direction.SHORT, "v", "tab:orange")):
        chosen = [p for p in positions if p.direction is direction]
        axes.scatter(pd.to_datetime([datetime_to_us(p.opened_at) for p in chosen], unit="us", utc=True),
                     [p.entry_price for p in chosen], marker=marker, color=colour, s=40, zorder=3,
                     label=f"{direction.value} entry")
    for won, colour in ((True, "tab:green"), (False, "tab:red")):
        exits = [(datetime_to_us(p.closed_at), p.exit_price) for p in positions
                 if p.closed_at is not None and p.exit_price is not None and (p.realized_pnl > 0) == won]
        axes.scatter(pd.to_datetime([t for t, _ in exits], unit="us", utc=True), [price for _, price in exits],
                     marker="x", color=colour, s=40, zorder=3, label="exit, gain" if won else "exit, loss")
    axes.set_title(f"{account.name}: {len(positions)} trades on {symbol}")
    axes.set_ylabel(symbol)
    axes.legend(loc="best", fontsize=8)
    return _saved(figure, path, axes, dates=True)


def draw_run(folder: Path, scorecard: Scorecard, history: BacktestHistory,
             robust: Robustness | None = None) -> list[Path]:
    """A run's pictures in ``folder``: every equity curve (``equity.png``), the best trading
    account's trades on each pair (``trades-<account>-<pair>.png``) and, with ``robust``, its
    Monte Carlo fans (``monte-carlo.png``)."""
    drawn = [plot_equity_curves(scorecard.accounts, folder / "equity.png", title=f"Backtest {folder.name}")]
    if robust is not None and (robust.reshuffled is not None or robust.bootstrapped is not None):
        drawn.append(plot_monte_carlo(robust, folder / "monte-carlo.png"))
    best = scorecard.best_trading_account()
    if best is not None:
        for symbol in history.symbols:
            name = f"trades-{best.name.replace(':', '-')}-{symbol.replace('/', '-')}.png"
            drawn.append(plot_trades(history, best, symbol, folder / name))
    return drawn


def plot_walk_forward(result: WalkForwardResult, path: Path) -> Path:
    """The windows (train and test spans, one row each) above each strategy's stitched
    out-of-sample equity; ``path`` returned."""
    if not result.windows:
        raise ValueError("no walk-forward window to draw")
    figure = Figure(figsize=(12, 8), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(2, 3))
    for row, window in enumerate(result.windows):
        train = pd.to_datetime([window.train_start_us, window.test_start_us], unit="us", utc=True)
        test = pd.to_datetime([window.test_start_us, window.test_end_us], unit="us", utc=True)
        top.plot(train, [row, row], color="tab:blue", linewidth=6, solid_capstyle="butt",
                 label="train" if row == 0 else None)
        top.plot(test, [row, row], color="tab:orange", linewidth=6, solid_capstyle="butt",
                 label="test" if row == 0 else None)
    top.set_ylabel("window")
    top.invert_yaxis()
    top.set_title(f"Walk-forward, {'anchored' if result.anchored else 'rolling'}: {len(result.windows)} windows")
    top.legend(loc="lower left")
    for walk in result.strategies:
        if walk.stitched_equity:
            times = pd.to_datetime(list(walk.stitched_times_us), unit="us", utc=True)
            bottom.plot(times, [(e - 1.0) * 100 for e in walk.stitched_equity], linewidth=1.2,
                        label=f"{walk.strategy} (gap {walk.gap_pct:+.2f} %/window)")
    bottom.axhline(0.0, color="grey", linewidth=0.8)
    bottom.set_ylabel("out-of-sample return (%)")
    bottom.set_xlabel("time (UTC)")
    bottom.legend(loc="best", fontsize=8)
    return _saved(figure, path, top, bottom, dates=True)


def plot_monte_carlo(result: Robustness, path: Path) -> Path:
    """The Monte Carlo fans of the best account: 5-95 % and 25-75 % bands and the median of the
    equity over its reshuffled trades (left) and its bootstrapped hours (right); ``path`` returned."""
    runs = [(name, mc) for name, mc in (("trades reshuffled", result.reshuffled),
                                        ("hours bootstrapped in day blocks", result.bootstrapped)) if mc is not None]
    if not runs:
        raise ValueError("no Monte Carlo run to draw")
    figure = Figure(figsize=(12, 5), dpi=100)
    FigureCanvasAgg(figure)
    for axes, (name, mc) in zip(figure.subplots(1, len(runs), squeeze=False)[0], runs, strict=True):
        steps = np.arange(mc.paths.shape[1])
        p5, p25, p50, p75, p95 = np.percentile(mc.paths, [5, 25, 50, 75, 95], axis=0)
        axes.fill_between(steps, p5, p95, color="tab:blue", alpha=0.2, label="5-95 %")
        axes.fill_between(steps, p25, p75, color="tab:blue", alpha=0.4, label="25-75 %")
        axes.plot(steps, p50, color="tab:blue", linewidth=1.5, label="median")
        drawdown = mc.drawdown_percentiles()
        axes.set_title(f"{result.best}: {name}\n{len(mc.final_equity)} runs, seed {mc.seed}; max drawdown"
                       f" p50 {drawdown.p50:.1%}, p95 {drawdown.p95:.1%}; P(dd >= 10 %)"
                       f" {mc.probability_of_drawdown(0.10):.1%}", fontsize=9)
        axes.set_xlabel("trade" if name.startswith("trades") else "hour")
        axes.set_ylabel("equity (USDT)")
        axes.legend(loc="upper left", fontsize=8)
        axes.grid(alpha=0.3)
    return _saved(figure, path, dates=False)


def _saved(figure: Figure, path: Path, *grids: Axes, dates: bool) -> Path:
    """Grid the axes, lay the figure out (dated x axes slanted) and write it as PNG at ``path``."""
    for axes in grids:
        axes.grid(alpha=0.3)
    if dates:
        figure.autofmt_xdate()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
