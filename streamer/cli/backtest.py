"""``triplegain backtest``: the live trading kernel over stored history, beside the baselines.

    triplegain backtest                                  every stored 1m candle of the configured pairs
    triplegain backtest --from 2026-11-01 --to 2026-12-01 --symbols XRP/USDT BTC/USDT
    triplegain backtest --file XRP/USDT=trades.parquet   a file in the formats the demo replays
    triplegain backtest --rerun bt-0123456789ab          the stored run again, checked trade for trade
    triplegain backtest --from 2026-11-01 --models       the configured models too, from their recordings

With ``--models`` the configured models (``llm.models``) deliberate every hour of market time
(``--models-every``), as the hourly schedule does live, each on its own account, answered only
from the answers recorded in paper runs (``llm_answer_cache``): a prompt never recorded stops
the run naming the model and the prompt hash; no provider is ever called. With ``--from``, the
candles of the 25 hours before it (``--warmup-minutes``) only warm up the kernel and the
models' contexts, so a round sees the history the paper run's round saw.

Every run is stored (``backtest_runs``: its configuration, its data and their hashes; each
account's scorecard, trades and hourly equity), printed as one leaderboard and drawn beside the
run (``<data dir>/backtests/<run id>/``: every equity curve and drawdown, the best account's trades).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from streamer.cli.options import positive_float, positive_int
from triplegain_core.backtest.history import BacktestHistory, BacktestSource
from triplegain_core.backtest.robustness import Robustness
from triplegain_core.config import Settings
from triplegain_core.errors import UserMistake, did_you_mean
from triplegain_core.model.market import TRADED_SYMBOLS, datetime_to_us
from triplegain_core.storage.endpoints import database_url
from triplegain_core.storage.migrate import migrate
from triplegain_core.strategies.registry import known_strategy_names


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``backtest``, ``walkforward``, ``ml-export``, ``lookahead`` and ``warmup``."""
    backtest = commands.add_parser("backtest", help="run every account over stored history, beside the baselines",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_source_options(backtest)
    backtest.add_argument("--rerun", metavar="RUN_ID", default=None,
                          help="run a stored run again from what is stored and check it gives the same trades")
    backtest.add_argument("--warmup-minutes", type=int, default=None, metavar="MINUTES",
                          help="with --from: minutes of candles before it that only warm the kernel and the"
                               " models' contexts up (default: 1500, what a model's context reads)")
    backtest.add_argument("--models", action="store_true",
                          help="the configured models too, each on its own account, answering from recordings")
    backtest.add_argument("--models-every", type=positive_int, default=None, metavar="MINUTES",
                          help="with --models: a round every MINUTES of market time (default: 60, as live)")
    backtest.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                          help="processes the strategies' accounts are shared out among (default: one per core;"
                               " the trades are the same with any number; with --models, one)")
    backtest.set_defaults(handler=_backtest)
    walk = commands.add_parser(
        "walkforward", help="choose each strategy's parameters on train windows, judge them on the test windows",
        description="Walk-forward: each strategy's parameter grid (a TOML file: one table per strategy, each"
                    " parameter a list of values) chosen on each train window only, judged on the test window"
                    " after it; prints the in-sample and out-of-sample returns and draws the stitched"
                    " out-of-sample equity.")
    _add_source_options(walk)
    walk.add_argument("--grid", type=Path, required=True, metavar="FILE",
                      help="the parameter grids, e.g. [momentum_scalp] fast_ema = [5, 8]")
    walk.add_argument("--train-hours", type=positive_float, required=True, help="length of a train window")
    walk.add_argument("--test-hours", type=positive_float, required=True, help="length of a test window")
    walk.add_argument("--anchored", action="store_true",
                      help="every train window starts at the history's start (default: rolling)")
    walk.set_defaults(handler=_walk_forward)
    export = commands.add_parser(
        "ml-export", help="the ML dataset (indicators, regime, patterns, forward returns) to parquet",
        description="Per symbol and timeframe, every candle's indicators, regime and patterns (known at its"
                    " close) beside its forward returns, written to <out>/<BASE>-<QUOTE>_<timeframe>.parquet.")
    _add_source_options(export)
    export.add_argument("--timeframes", nargs="+", choices=("1m", "5m", "15m", "1h", "4h", "1d"),
                        default=["1m", "5m", "1h"], help="timeframes (default: 1m 5m 1h)")
    export.add_argument("--horizons", nargs="+", type=positive_int, default=None,
                        help="forward-return horizons in candles (default: 1 5 15)")
    export.add_argument("--out", type=Path, default=None, help="folder (default: <data dir>/ml)")
    export.set_defaults(handler=_ml_export)
    for name, helps in (("lookahead", "recompute each strategy's signals on the history cut at their decision:"
                                      " any difference is look-ahead"),
                        ("warmup", "replay each strategy with a warm-up of N and 2N candles: a strategy or an"
                                   " indicator that changes is reported")):
        check = commands.add_parser(name, help=helps, description=helps + ". Every discovered strategy (plugins"
                                    " included) unless --strategies names some; exits 1 when one is found.")
        _add_source_options(check)
        check.add_argument("--strategies", nargs="+", default=None, metavar="NAME", help="only these strategies")
        if name == "warmup":
            check.add_argument("--warmup", type=positive_int, default=None, metavar="N",
                               help="candles of warm-up (default: each strategy's window)")
        check.set_defaults(handler=_strategy_checks, check=name)


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", type=_day, default=None, metavar="DATE",
                        help="first day (UTC, YYYY-MM-DD or an ISO time; default: the first stored candle)")
    parser.add_argument("--to", dest="end", type=_day, default=None, metavar="DATE",
                        help="end (exclusive; default: after the last closed candle)")
    parser.add_argument("--symbols", nargs="+", choices=TRADED_SYMBOLS, default=None,
                        help="pairs (default: the configuration's)")
    parser.add_argument("--file", dest="files", action="append", type=_source_file, default=[],
                        metavar="SYMBOL=PATH", help="a trades or candles file standing for SYMBOL (repeatable)")


def _source(args: argparse.Namespace, settings: Settings) -> BacktestSource:
    """The candles the options name: files, else the database's."""
    from triplegain_core.backtest.history import SourceFile

    if args.files:
        return BacktestSource(kind="files", files=tuple(SourceFile(path=p, symbol=s) for s, p in args.files))
    return BacktestSource(kind="database", symbols=tuple(args.symbols or settings.symbols), start=args.start,
                          end=args.end)


def _loaded(conn: psycopg.Connection | None, source: BacktestSource) -> BacktestHistory:
    """The history of ``source``; a one-line mistake when it holds no candle."""
    from triplegain_core.backtest.history import EmptyHistory
    from triplegain_core.storage.backtest_store import load_history

    try:
        return load_history(conn, source, datetime_to_us(datetime.now(UTC)))
    except EmptyHistory as exc:
        raise UserMistake(f"nothing to backtest: {exc} in {_describe(source)}; backfill it first"
                          " (the history assets in Dagster, or `triplegain stream`) or give --file") from None


def _with_warmup(source: BacktestSource, minutes: int | None) -> BacktestSource:
    """``source`` with its warm-up: ``minutes`` (default: what a model's context reads) before
    ``--from``; none without ``--from`` (the history then starts at the first candle)."""
    from triplegain_core.llm.context import HISTORY_MINUTES

    if minutes is not None and minutes < 0:
        raise UserMistake(f"--warmup-minutes {minutes}: give 0 or more minutes")
    if source.start is None:
        if minutes:
            raise UserMistake("--warmup-minutes needs --from: the candles before it are the warm-up")
        return source
    return source.model_copy(update={"warmup_minutes": HISTORY_MINUTES if minutes is None else minutes})


def _model_rounds(args: argparse.Namespace, settings: Settings) -> int | None:
    """How often the models deliberate in this backtest (minutes), or None: without them."""
    from triplegain_core.backtest.models import DEFAULT_ROUND_MINUTES

    if not args.models:
        if args.models_every is not None:
            raise UserMistake("--models-every needs --models (the models are left out without it)")
        return None
    if not settings.llm.models:
        raise UserMistake("--models: the configuration names no model (llm.models is empty)")
    return args.models_every or DEFAULT_ROUND_MINUTES


def _day(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: give YYYY-MM-DD or an ISO time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _source_file(text: str) -> tuple[str, str]:
    symbol, _, path = text.partition("=")
    if not path or symbol not in TRADED_SYMBOLS:
        raise argparse.ArgumentTypeError(f"{text!r}: give SYMBOL=PATH with SYMBOL one of {', '.join(TRADED_SYMBOLS)}")
    return symbol, path


class ProgressBar:
    """A progress bar on stderr: redrawn in place on a terminal, a line every tenth otherwise."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._started = time.perf_counter()
        self._tenth = -1
        self._terminal = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        """Show ``done`` of ``total`` candles."""
        rate = done / max(time.perf_counter() - self._started, 1e-9)
        line = (f"{self._label}: [{'#' * (30 * done // total):<30}] {100 * done // total:3d}% {done:,}/{total:,}"
                f" candles, {rate:,.0f}/s")
        if self._terminal:
            print(f"\r{line}", end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif (tenth := 10 * done // total) != self._tenth:
            self._tenth = tenth
            print(line, file=sys.stderr, flush=True)


def _backtest(args: argparse.Namespace, settings: Settings) -> int:
    from triplegain_core.backtest.engine import model_rounds_of, run_backtest, settings_of
    from triplegain_core.backtest.leaderboard import scorecard
    from triplegain_core.backtest.models import MissingRecordingError, ModelRounds
    from triplegain_core.backtest.robustness import robustness, summary
    from triplegain_core.reporting.backtest_charts import draw_run
    from triplegain_core.storage.backtest_store import BacktestStore
    from triplegain_core.storage.llm_store import llm_store

    # The options are judged before any server is reached (a rerun takes its own from the store).
    source = _with_warmup(_source(args, settings), args.warmup_minutes)
    minutes = _model_rounds(args, settings)
    db_url = database_url(settings)
    migrate(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        store = BacktestStore(conn)
        stored = store.run(args.rerun) if args.rerun else None
        if stored is not None:
            source, settings = stored.source, settings_of(stored.config, base=settings)
            minutes = model_rounds_of(stored.config)
        history = _loaded(conn, source)
        if stored is not None and history.data_hash != stored.data_hash:
            raise UserMistake(f"--rerun {stored.run_id}: the data changed since the run ({_describe(source)} now"
                              f" hashes {history.data_hash[:12]}, the run had {stored.data_hash[:12]})")
        models = None if minutes is None else ModelRounds(answers=lambda: llm_store(db_url), every_minutes=minutes)
        print(f"backtest of {len(history.candles):,} candles ({', '.join(history.symbols)}) from"
              f" {_describe(source)}" + ("" if minutes is None else f", models every {minutes} min from recordings"),
              file=sys.stderr)
        try:
            result = run_backtest(settings, history, progress=ProgressBar("backtest"), models=models,
                                  decide_from_us=source.decide_from_us, workers=args.workers)
        except MissingRecordingError as exc:
            raise UserMistake(str(exc)) from None
        card = scorecard(settings, result)
        robust = robustness(card)
        run_id = store.record(result, card, source, reproduces=stored.run_id if stored else None,
                              robustness=summary(robust))
    print(f"run {run_id}: config {result.config_hash[:12]}, data {history.data_hash[:12]}, trades"
          f" {result.trades_hash[:12]}, {result.seconds:.1f} s ({len(history.candles) / result.seconds:,.0f}"
          " candles/s)")
    if result.model_calls:
        print(f"models: {len(result.model_calls)} answers replayed from the recordings")
    print(f"{'#':>3} {'account':<28} {'kind':<10} {'return %':>9} {'max dd %':>9} {'sharpe':>7} {'trades':>6}"
          f" {'win %':>6} {'fees':>8}")
    for row in card.rows:
        print(f"{row.rank:>3} {row.account:<28} {row.kind.value:<10} {_num(row.return_pct, 2):>9}"
              f" {row.max_drawdown_pct:>9.2f} {_num(row.sharpe, 2):>7} {row.trades:>6}"
              f" {_num(None if row.win_rate is None else row.win_rate * 100, 1):>6} {row.fees_usdt:>8.2f}")
    if card.by_regime:
        print(f"\nby the regime at entry:\n{'account':<28} {'regime':<11} {'trades':>6} {'win %':>6}"
              f" {'expectancy':>10} {'pnl':>9}")
        for split in card.by_regime:
            print(f"{split.account:<28} {split.regime:<11} {split.trades:>6} {split.win_rate * 100:>6.1f}"
                  f" {_num(split.expectancy_usdt, 3):>10} {split.pnl_usdt:>9.3f}")
    _print_robustness(robust)
    for chart in draw_run(settings.data_dir / "backtests" / run_id, card, history, robust):
        print(f"chart: {chart}")
    if stored is not None:
        if result.trades_hash != stored.trades_hash:
            raise UserMistake(f"--rerun {stored.run_id}: NOT reproduced: trades {result.trades_hash[:12]} differ"
                              f" from the stored run's {stored.trades_hash[:12]} (same data and configuration)")
        print(f"reproduced {stored.run_id}: the same trades, fill for fill")
    return 0


def _print_robustness(robust: Robustness) -> None:
    if robust.best is None:
        print("\nno trading account varied enough for a Sharpe ratio")
        return
    interval = next(s.interval for s in robust.sharpes if s.account == robust.best)
    assert interval is not None
    print(f"\nbest by Sharpe: {robust.best}, Sharpe {interval.sharpe:.2f} (95 % interval {interval.low:.2f} to"
          f" {interval.high:.2f}); deflated for {robust.trials} accounts tried:"
          f" {_num(None if robust.deflated_sharpe is None else 100 * robust.deflated_sharpe, 1)} % probability of"
          " real skill; PBO of choosing it: "
          f"{'-' if robust.overfitting is None else f'{robust.overfitting.probability:.0%}'}")
    for name, mc in (("trades reshuffled", robust.reshuffled), ("hours bootstrapped", robust.bootstrapped)):
        if mc is not None:
            equity, drawdown = mc.equity_percentiles(), mc.drawdown_percentiles()
            print(f"monte carlo, {name} ({len(mc.final_equity)} runs, seed {mc.seed}): final equity"
                  f" p5/p50/p95 {equity.p5:.2f}/{equity.p50:.2f}/{equity.p95:.2f}, max drawdown"
                  f" {drawdown.p5:.1%}/{drawdown.p50:.1%}/{drawdown.p95:.1%}, P(drawdown >= 10 %)"
                  f" {mc.probability_of_drawdown(0.10):.1%}")


def _walk_forward(args: argparse.Namespace, settings: Settings) -> int:
    from triplegain_core.backtest.walk_forward import parameter_sets, walk_forward, walk_forward_windows
    from triplegain_core.reporting.backtest_charts import plot_walk_forward

    grids = {name: parameter_sets(values) for name, values in _grid_file(args.grid).items()}
    history = _history_of(args, settings)
    try:
        windows = walk_forward_windows(history.start_us, history.end_us, round(args.train_hours * 60),
                                       round(args.test_hours * 60), args.anchored)
    except ValueError as exc:
        raise UserMistake(f"--train-hours/--test-hours: {exc}") from None
    print(f"walk-forward of {', '.join(grids)} over {len(history.candles):,} candles: {len(windows)}"
          f" {'anchored' if args.anchored else 'rolling'} windows", file=sys.stderr)
    try:
        result = walk_forward(settings, history, grids, windows, anchored=args.anchored,
                              progress=lambda done, total: print(f"walk-forward: window {done} of {total}",
                                                                 file=sys.stderr, flush=True))
    except ValueError as exc:
        raise UserMistake(f"--grid {args.grid}: {exc}") from None
    print(f"{'strategy':<22} {'in-sample %':>12} {'out-of-sample %':>16} {'gap %':>8} {'stitched %':>11}  choices")
    for walk in result.strategies:
        choices = "; ".join(", ".join(f"{k}={v}" for k, v in w.parameters.items()) or "configured"
                            for w in walk.windows)
        print(f"{walk.strategy:<22} {walk.in_sample_pct:>12.3f} {walk.out_of_sample_pct:>16.3f}"
              f" {walk.gap_pct:>8.3f} {walk.stitched_return_pct:>11.3f}  {choices}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    print(f"chart: {plot_walk_forward(result, settings.data_dir / 'walkforward' / f'walkforward-{stamp}.png')}")
    return 0


def _ml_export(args: argparse.Namespace, settings: Settings) -> int:
    import pandas as pd

    from triplegain_core.analysis.ml_dataset import DEFAULT_HORIZONS, ml_dataset, write_ml_dataset

    history = _history_of(args, settings)
    folder = args.out or settings.data_dir / "ml"
    for symbol in history.symbols:
        candles = pd.DataFrame(
            [(c.open_time, c.open, c.high, c.low, c.close, c.volume) for c in history.candles if c.symbol == symbol],
            columns=["open_time", "open", "high", "low", "close", "volume"])
        for timeframe in args.timeframes:
            frame = ml_dataset(candles, timeframe, args.horizons or DEFAULT_HORIZONS)
            print(f"{write_ml_dataset(frame, folder, symbol, timeframe)}: {len(frame):,} rows")
    return 0


def _strategy_checks(args: argparse.Namespace, settings: Settings) -> int:
    from triplegain_core.backtest.lookahead import lookahead_check, warmup_check
    from triplegain_core.config import StrategySettings
    from triplegain_core.strategies.selection import select_strategies

    known = known_strategy_names()
    for name in args.strategies or ():
        if name not in known:
            raise UserMistake(f"--strategies: no strategy {name}; there are {', '.join(known)}"
                              f"{did_you_mean(name, known)}")
    chosen = StrategySettings(enabled=tuple(args.strategies)) if args.strategies else StrategySettings()
    history = _history_of(args, settings)
    found = 0
    for strategy in select_strategies(chosen, history.symbols).strategies:
        for symbol in history.symbols:
            if symbol not in strategy.symbols:
                continue
            candles = [c for c in history.candles if c.symbol == symbol]
            try:
                report = lookahead_check(strategy, candles) if args.check == "lookahead" else \
                    warmup_check(strategy, candles, args.warmup)
            except ValueError as exc:
                print(f"{strategy.name} {symbol}: not checked: {exc}")
                continue
            found += report.not_checkable is None and not report.clean
            print(report.summary())
    return 1 if found else 0


def _history_of(args: argparse.Namespace, settings: Settings) -> BacktestHistory:
    """The history the source options name, from files or the database."""
    source = _source(args, settings)
    if source.kind == "files":
        return _loaded(None, source)
    db_url = database_url(settings)
    migrate(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        return _loaded(conn, source)


def _grid_file(path: Path) -> dict[str, dict[str, list[object]]]:
    """The grids of a TOML file: a table per strategy, a list of values per parameter."""
    try:
        tables = tomllib.loads(path.read_text())
    except OSError as exc:
        raise UserMistake(f"--grid {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserMistake(f"--grid {path}: not valid TOML: {exc}") from None
    for name, table in tables.items():
        if not isinstance(table, dict) or not all(isinstance(v, list) and v for v in table.values()):
            raise UserMistake(f"--grid {path}: [{name}] must map each parameter to a non-empty list of values,"
                              " e.g. fast_ema = [5, 8]")
    if not tables:
        raise UserMistake(f"--grid {path}: no strategy in it; give one table per strategy, e.g. [momentum_scalp]")
    known = known_strategy_names()
    for name in tables:
        if name not in known:
            raise UserMistake(f"--grid {path}: no strategy {name} to walk forward; there are {', '.join(known)}"
                              f"{did_you_mean(name, known)}")
    return tables


def _describe(source: BacktestSource) -> str:
    if source.kind == "files":
        return ", ".join(f"{f.path} as {f.symbol}" for f in source.files)
    span = f" from {source.start.isoformat() if source.start else 'the start'} to" \
           f" {source.end.isoformat() if source.end else 'the end'}"
    return f"the database's 1m candles of {', '.join(source.symbols)}{span}"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
