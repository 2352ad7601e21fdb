"""The main job: the whole loop, end to end, on real servers.

replay exchange (Kraken WS v2) -> streamer -> PostgreSQL + Redis -> executor -> paper fills
-> Dagster assets (``dagster asset materialize``) -> summary.

The demo owns its world: it recreates its database and flushes its Redis database before it
starts, so running it twice gives the same result instead of piling runs on top of each other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from tqdm import tqdm

from streamer.demo.deliberation import DeliberationLog, DemoDeliberation
from streamer.executor.loop import TradingLoop
from streamer.ingest.connection import TradeStreamer
from streamer.replay.exchange import ReplayExchange
from streamer.replay.source import ReplaySource, replay_source
from triplegain_core.config import Settings
from triplegain_core.contracts.decision_streams import DecisionStream, StrongSignalStream
from triplegain_core.contracts.hot_state import HotStatePublisher, HotStateReader
from triplegain_core.decisions.intake import DecisionIntake
from triplegain_core.execution.kernel import KernelStats
from triplegain_core.llm.leaderboard import Leaderboard, leaderboard, render_markdown
from triplegain_core.model.market import Asset
from triplegain_core.portfolio.metrics import AccountMetrics
from triplegain_core.storage.dagster_instance import prepare_dagster_home
from triplegain_core.storage.decision_ledger import DecisionLedger
from triplegain_core.storage.embedded import (
    drop_database,
    embedded_postgres_url,
    embedded_redis_url,
    ensure_database,
)
from triplegain_core.storage.endpoints import writable_data_dir
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.migrate import migrate
from triplegain_core.storage.model_accounts import model_accounts
from triplegain_core.storage.trading_store import TradingStore

DEMO_DATABASE = "triplegain"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DemoResult:
    """What the demo did, for the summary and for the end-to-end test."""

    database_url: str
    redis_url: str
    account: str
    trades_replayed: int
    candles_per_symbol: dict[str, int]
    executor: KernelStats
    activity: dict[str, int]
    fees: dict[str, float]
    start_balances: dict[Asset, float]
    final_balances: dict[Asset, float]
    start_equity_usdt: float
    final_equity_usdt: float
    report_image: Path | None
    # The scorecard of every account the executor traded: the base one, one per strategy, and
    # one per model (and the consensus) when models deliberated.
    accounts: dict[str, AccountMetrics] = field(default_factory=dict)
    deliberation: DeliberationLog = field(default_factory=DeliberationLog)
    leaderboard: Leaderboard | None = None


def run_demo_command(settings: Settings, args: argparse.Namespace) -> int:
    """``triplegain demo``: fresh demo database on the embedded servers, run, summarize."""
    if settings.database_url or settings.redis_url:
        print("note: the demo runs on its own embedded servers; configured URLs are left untouched")
    # Every input is checked before the demo database is recreated: a bad source, symbol or
    # data directory changes nothing.
    source = replay_source(args.source, args.symbol, hours=args.hours, seed=args.seed)
    data_dir = writable_data_dir(settings.data_dir).resolve()
    admin_url = embedded_postgres_url(data_dir, database="postgres")
    drop_database(admin_url, DEMO_DATABASE)
    ensure_database(admin_url, DEMO_DATABASE)
    db_url = _with_database(admin_url, DEMO_DATABASE)
    result = asyncio.run(
        run_demo(settings, source, db_url, embedded_redis_url(data_dir), speed=args.speed,
                 deliberate_every_minutes=args.deliberate_every)
    )
    if not args.no_dagster:
        # Dagster's database is the one `make ui` opens: beside the server's own database.
        materialize_assets(result, data_dir, embedded_postgres_url(data_dir))
    print_summary(result, data_dir)
    return 0


async def run_demo(
    settings: Settings,
    source: ReplaySource,
    database_url: str,
    redis_url: str,
    speed: float = 0.0,
    progress: bool = True,
    deliberate_every_minutes: int = 60,
) -> DemoResult:
    """Replay ``source`` through exchange, streamer and executor, the models deliberating every
    ``deliberate_every_minutes`` of market time when any is configured; return what happened."""
    migrate(database_url)
    redis.Redis.from_url(redis_url).flushdb()
    settings = settings.model_copy(update={"symbols": source.symbols})

    async with ReplayExchange(source.trades, source.symbols, speed=speed) as exchange:
        settings = settings.model_copy(update={"ws_url": exchange.url})
        with psycopg.connect(database_url, autocommit=True) as market_conn, \
                psycopg.connect(database_url, autocommit=True) as trading_conn:
            redis_client = redis.Redis.from_url(redis_url)
            streamer = TradeStreamer(settings, MarketStore(market_conn),
                                     HotStatePublisher(redis_client))
            intake = DecisionIntake(DecisionStream(redis_client), DecisionLedger(trading_conn),
                                    min_confidence=settings.deliberation.min_confidence, start_id="0")
            loop = TradingLoop(settings, HotStateReader(redis_client), TradingStore(trading_conn),
                               start_stream_id="0", decisions=intake,
                               strong_signals=StrongSignalStream(redis_client))
            start_balances = loop.kernel.portfolio.balances
            executor_stop = asyncio.Event()
            executor_task = asyncio.create_task(loop.run(executor_stop))
            rounds = DemoDeliberation(settings, database_url, redis_url, deliberate_every_minutes)
            rounds_task = asyncio.create_task(rounds.run(exchange, loop))
            with _ProgressBar(source, streamer, enabled=progress):
                ingest = await streamer.run_until(exchange.finished)
            deliberation = await rounds_task
            executor_stop.set()
            executor_stats = await executor_task
            trading = TradingStore(trading_conn)
            models = model_accounts(trading_conn)
            snapshots = trading.snapshots(settings.account)
            candles = MarketStore(market_conn).read_candles()
            return DemoResult(
                database_url=database_url,
                redis_url=redis_url,
                account=settings.account,
                trades_replayed=ingest.trades,
                candles_per_symbol=candles.groupby("symbol").size().to_dict(),
                executor=executor_stats,
                activity=trading.activity_counts(settings.account),
                fees=trading.fees_paid(settings.account),
                start_balances=start_balances,
                final_balances=loop.kernel.portfolio.balances,
                start_equity_usdt=float(snapshots["equity_usdt"].iloc[0]) if len(snapshots) else 0.0,
                final_equity_usdt=float(snapshots["equity_usdt"].iloc[-1]) if len(snapshots) else 0.0,
                report_image=None,
                accounts={a.name: trading.account_metrics(a.name) for a in loop.kernel.accounts},
                deliberation=deliberation,
                leaderboard=leaderboard(models) if models else None,
            )


# The demo's runs execute their steps in one process: a process per step would import the
# definitions again for each of them, seconds apiece, which on a small machine is most of the wait.
IN_PROCESS = json.dumps({"execution": {"config": {"in_process": {}}}})


def materialize_assets(result: DemoResult, data_dir: Path, instance_beside_url: str) -> DemoResult:
    """Run the `demo_analytics` job, then the features of each day and symbol replayed, with
    the real CLI on the demo's data, in the Dagster instance under ``data_dir`` whose database
    lies beside ``instance_beside_url``'s."""
    env = {
        **os.environ,
        **prepare_dagster_home(data_dir / "dagster", REPO_ROOT / "dagster.yaml", instance_beside_url),
        "TRIPLEGAIN_DATABASE_URL": result.database_url,
        "TRIPLEGAIN_REDIS_URL": result.redis_url,
        "TRIPLEGAIN_ACCOUNT": result.account,
        "TRIPLEGAIN_DATA_DIR": str(data_dir),
    }
    print("materializing the Dagster assets ...", flush=True)
    run_config = data_dir / "dagster" / "in_process.yaml"
    run_config.write_text(IN_PROCESS)  # JSON is YAML
    completed = subprocess.run(
        # The demo's own rounds already asked the models: the job holds no extra (paid) round
        # after the replay, whose decisions nobody would trade, only their scores; nor a
        # backtest, which reads recent days of candles (the replayed market lies in the past).
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "triplegain_dagster.definitions",
         "-j", "demo_analytics", "--config", str(run_config)],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True,
    )
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-4000:])
        raise RuntimeError("dagster job execute demo_analytics failed (output above)")
    with psycopg.connect(result.database_url) as conn:
        partitions = MarketStore(conn).candle_days()
    # The features are partitioned by day and symbol: one run each for the days replayed.
    for day, symbol in partitions:
        completed = subprocess.run(
            [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "triplegain_dagster.definitions",
             "--select", "indicator_features", "--partition", f"{day.isoformat()}|{symbol}",
             "--config-json", IN_PROCESS],
            env=env, cwd=REPO_ROOT, capture_output=True, text=True,
        )
        if completed.returncode != 0:
            sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-4000:])
            raise RuntimeError(f"the features of {symbol} on {day} failed (output above)")
    return result


def print_summary(result: DemoResult, data_dir: Path) -> None:
    """The figures a trader wants after the run."""
    image = data_dir / "reports" / "equity_curve.png"
    pnl = result.final_equity_usdt - result.start_equity_usdt
    pct = 100 * pnl / result.start_equity_usdt if result.start_equity_usdt else 0.0
    lines = [
        "",
        "TripleGain demo summary",
        "=======================",
        f"trades replayed     {result.trades_replayed:,}",
        "candles stored      " + ", ".join(f"{s}: {n}" for s, n in sorted(result.candles_per_symbol.items())),
        f"signals             {result.activity['signals']}",
        f"risk checks         {result.activity['approved_checks']} approved, "
        f"{result.activity['rejected_checks']} rejected",
        f"orders / fills      {result.activity['orders']} / {result.activity['fills']}",
        "fees paid           " + (", ".join(f"{v:.4f} {k}" for k, v in result.fees.items()) or "none"),
        "holdings            " + "   ".join(
            f"{asset.value}: {result.start_balances.get(asset, 0.0):,.8g} -> "
            f"{result.final_balances.get(asset, 0.0):,.8g}" for asset in Asset),
        f"value (USDT)        {result.start_equity_usdt:,.2f} -> {result.final_equity_usdt:,.2f} "
        f"({pnl:+,.2f}, {pct:+.2f} %)",
        f"{'accounts':<36}{'trades':>6}  {'win rate':>8}  {'realized PnL (USDT)':>19}  {'max drawdown':>12}",
        *(f"  {name:<34}{m.trades:>6}  {_percent(m.win_rate):>8}  {m.realized_pnl_usdt:>19,.2f}"
          f"  {100 * m.max_drawdown:>10.2f} %" for name, m in result.accounts.items()),
        f"models              {result.deliberation.message}",
        *([f"deliberation        {result.deliberation.rounds} rounds, {result.deliberation.decisions} decisions,"
           f" {result.deliberation.published} handed to the executor"] if result.deliberation.rounds else []),
        *(["leaderboard (each model's own paper account):", render_markdown(result.leaderboard)]
          if result.leaderboard is not None else []),
        f"report image        {image if image.exists() else '(not materialized)'}",
        f"Dagster UI          make ui   (DAGSTER_HOME={data_dir / 'dagster'}), then http://127.0.0.1:3000",
    ]
    print("\n".join(lines))


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _with_database(url: str, database: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = database
    return make_conninfo("", **params)


class _ProgressBar:
    """A bar over simulated time, fed by the streamer's latest trade timestamp."""

    def __init__(self, source: ReplaySource, streamer: TradeStreamer, enabled: bool) -> None:
        self._source, self._streamer, self._enabled = source, streamer, enabled
        self._bar: tqdm | None = None
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> _ProgressBar:
        if self._enabled:
            self._bar = tqdm(total=max(1, self._source.minutes), unit="sim-min", desc="replaying",
                             file=sys.stdout)
            self._task = asyncio.get_running_loop().create_task(self._update())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._bar is not None:
            self._refresh()
            self._bar.close()

    async def _update(self) -> None:
        while True:
            self._refresh()
            await asyncio.sleep(0.25)

    def _refresh(self) -> None:
        assert self._bar is not None
        last = self._streamer.stats.last_trade_ts_us
        if last:
            minute = (last - self._source.start_us) // 60_000_000 + 1
            self._bar.update(min(self._bar.total, minute) - self._bar.n)
            self._bar.set_postfix(trades=self._streamer.stats.trades, refresh=False)
