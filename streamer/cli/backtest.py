"""``triplegain backtest``: the live trading kernel over stored history, beside the baselines.

    triplegain backtest                                  every stored 1m candle of the configured pairs
    triplegain backtest --from 2026-11-01 --to 2026-12-01 --symbols XRP/USDT BTC/USDT
    triplegain backtest --file XRP/USDT=trades.parquet   a file in the formats the demo replays
    triplegain backtest --rerun bt-0123456789ab          the stored run again, checked trade for trade

Every run is stored (``backtest_runs``: its configuration, its data and their hashes; each
account's scorecard, trades and hourly equity), printed as one leaderboard and drawn beside the
run (``<data dir>/backtests/<run id>/``: every equity curve and drawdown, the best account's trades).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

import psycopg

from triplegain_core.backtest.history import BacktestSource
from triplegain_core.config import Settings
from triplegain_core.errors import UserMistake
from triplegain_core.model.market import TRADED_SYMBOLS, datetime_to_us
from triplegain_core.storage.endpoints import database_url
from triplegain_core.storage.migrate import migrate


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``backtest``."""
    backtest = commands.add_parser("backtest", help="run every account over stored history, beside the baselines",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    backtest.add_argument("--from", dest="start", type=_day, default=None, metavar="DATE",
                          help="first day (UTC, YYYY-MM-DD or an ISO time; default: the first stored candle)")
    backtest.add_argument("--to", dest="end", type=_day, default=None, metavar="DATE",
                          help="end (exclusive; default: after the last closed candle)")
    backtest.add_argument("--symbols", nargs="+", choices=TRADED_SYMBOLS, default=None,
                          help="pairs (default: the configuration's)")
    backtest.add_argument("--file", dest="files", action="append", type=_source_file, default=[],
                          metavar="SYMBOL=PATH", help="a trades or candles file standing for SYMBOL (repeatable)")
    backtest.add_argument("--rerun", metavar="RUN_ID", default=None,
                          help="run a stored run again from what is stored and check it gives the same trades")
    backtest.set_defaults(handler=_backtest)


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
    from triplegain_core.backtest.engine import run_backtest, settings_of
    from triplegain_core.backtest.history import EmptyHistory, SourceFile
    from triplegain_core.backtest.leaderboard import scorecard
    from triplegain_core.reporting.backtest_charts import draw_run
    from triplegain_core.storage.backtest_store import BacktestStore, load_history

    db_url = database_url(settings)
    migrate(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        store = BacktestStore(conn)
        stored = store.run(args.rerun) if args.rerun else None
        if stored is not None:
            source, settings = stored.source, settings_of(stored.config)
        elif args.files:
            source = BacktestSource(kind="files", files=tuple(SourceFile(path=p, symbol=s) for s, p in args.files))
        else:
            source = BacktestSource(kind="database", symbols=tuple(args.symbols or settings.symbols),
                                    start=args.start, end=args.end)
        try:
            history = load_history(conn, source, datetime_to_us(datetime.now(UTC)))
        except EmptyHistory as exc:
            raise UserMistake(f"nothing to backtest: {exc} in {_describe(source)}; backfill it first"
                              " (the history assets in Dagster, or `triplegain stream`) or give --file") from None
        if stored is not None and history.data_hash != stored.data_hash:
            raise UserMistake(f"--rerun {stored.run_id}: the data changed since the run ({_describe(source)} now"
                              f" hashes {history.data_hash[:12]}, the run had {stored.data_hash[:12]})")
        print(f"backtest of {len(history.candles):,} candles ({', '.join(history.symbols)}) from"
              f" {_describe(source)}", file=sys.stderr)
        result = run_backtest(settings, history, progress=ProgressBar("backtest"))
        card = scorecard(settings, result)
        run_id = store.record(result, card.rows, source, reproduces=stored.run_id if stored else None)
    print(f"run {run_id}: config {result.config_hash[:12]}, data {history.data_hash[:12]}, trades"
          f" {result.trades_hash[:12]}, {result.seconds:.1f} s ({len(history.candles) / result.seconds:,.0f}"
          " candles/s)")
    print(f"{'#':>3} {'account':<28} {'kind':<10} {'return %':>9} {'max dd %':>9} {'sharpe':>7} {'trades':>6}"
          f" {'win %':>6} {'fees':>8}")
    for row in card.rows:
        print(f"{row.rank:>3} {row.account:<28} {row.kind.value:<10} {_num(row.return_pct, 2):>9}"
              f" {row.max_drawdown_pct:>9.2f} {_num(row.sharpe, 2):>7} {row.trades:>6}"
              f" {_num(None if row.win_rate is None else row.win_rate * 100, 1):>6} {row.fees_usdt:>8.2f}")
    for chart in draw_run(settings.data_dir / "backtests" / run_id, card, history):
        print(f"chart: {chart}")
    if stored is not None:
        if result.trades_hash != stored.trades_hash:
            raise UserMistake(f"--rerun {stored.run_id}: NOT reproduced: trades {result.trades_hash[:12]} differ"
                              f" from the stored run's {stored.trades_hash[:12]} (same data and configuration)")
        print(f"reproduced {stored.run_id}: the same trades, fill for fill")
    return 0


def _describe(source: BacktestSource) -> str:
    if source.kind == "files":
        return ", ".join(f"{f.path} as {f.symbol}" for f in source.files)
    span = f" from {source.start.isoformat() if source.start else 'the start'} to" \
           f" {source.end.isoformat() if source.end else 'the end'}"
    return f"the database's 1m candles of {', '.join(source.symbols)}{span}"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
