"""One backtest of the stored candles: every account the configuration trades, beside the baselines."""

import base64
from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from triplegain_core.backtest.engine import run_backtest
from triplegain_core.backtest.history import BacktestSource, EmptyHistory
from triplegain_core.backtest.leaderboard import Scorecard, scorecard
from triplegain_core.backtest.models import MissingRecordingError, ModelRounds
from triplegain_core.backtest.robustness import robustness, summary
from triplegain_core.llm.context import HISTORY_MINUTES
from triplegain_core.model.market import datetime_to_us
from triplegain_core.reporting.backtest_charts import draw_run
from triplegain_core.reporting.reports import markdown_table
from triplegain_core.storage.backtest_store import BacktestStore, load_history
from triplegain_core.storage.llm_store import llm_store
from triplegain_dagster import groups
from triplegain_dagster.defs.market_data.candles import candles_1m
from triplegain_dagster.resources import PostgresResource


class BacktestRunConfig(dg.Config):
    """Run configuration of ``backtest_run``."""

    days: float = Field(default=7.0, gt=0.0, le=3660.0,
                        description="The stored candles of the last this many days (ending now).")
    symbols: list[str] | None = Field(default=None, description="Pairs; unset: the configuration's.")
    models: bool = Field(default=False,
                         description="The configured models too, each on its own account, deliberating hourly"
                                     " from the answers recorded in paper runs only (a missing recording fails"
                                     " the run, naming the model and the prompt hash).")


@dg.asset(
    group_name=groups.BACKTESTS,
    deps=[candles_1m],
    kinds={"python", "postgres"},
    description="Every account (TechnicalAgent, each strategy, with `models` each model) over the stored 1m"
                " candles, in market time,"
                " with the live risk rules, fees and fills, beside buy-and-hold, hold and equal-weight"
                " baselines; the best account's Sharpe interval, deflated Sharpe, PBO and Monte Carlo;"
                " stored in backtest_runs, drawn beside the run.",
)
def backtest_run(
    context: dg.AssetExecutionContext, config: BacktestRunConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Run, score, store and draw one backtest of the recent stored history."""
    settings = postgres.settings()
    now = datetime.now(UTC)
    # The day before the start only warms the kernel and the models' contexts up.
    source = BacktestSource(kind="database", symbols=tuple(config.symbols or settings.symbols),
                            start=now - timedelta(days=config.days), end=now, warmup_minutes=HISTORY_MINUTES)
    models = ModelRounds(answers=lambda: llm_store(postgres.url())) if config.models else None
    with postgres.connect() as conn:
        try:
            history = load_history(conn, source, datetime_to_us(now))
        except EmptyHistory as exc:
            raise dg.Failure(f"nothing to backtest: {exc} in the last {config.days:g} days; backfill the"
                             " history first") from None
        tenths: set[int] = set()

        def progress(done: int, total: int) -> None:
            tenth = 10 * done // total
            if tenth not in tenths:
                tenths.add(tenth)
                context.log.info("backtest: %d%% (%d of %d candles)", 10 * tenth, done, total)

        try:
            result = run_backtest(settings, history, progress=progress, models=models,
                                  decide_from_us=source.decide_from_us)
        except MissingRecordingError as exc:
            raise dg.Failure(str(exc)) from None
        card = scorecard(settings, result)
        robust = robustness(card)
        figures = summary(robust)
        run_id = BacktestStore(conn).record(result, card, source, robustness=figures)
    pictures = draw_run(settings.data_dir / "backtests" / run_id, card, history, robust)
    equity = base64.b64encode(pictures[0].read_bytes()).decode("ascii")
    return dg.MaterializeResult(metadata={
        "run_id": run_id,
        "candles": len(history.candles),
        "config_hash": result.config_hash,
        "data_hash": history.data_hash,
        "trades_hash": result.trades_hash,
        "leaderboard": dg.MetadataValue.md(_leaderboard_markdown(card)),
        "by_regime": dg.MetadataValue.md(markdown_table(
            ["account", "regime at entry", "trades", "win %", "expectancy (USDT)", "PnL (USDT)"],
            [[r.account, r.regime, r.trades, f"{100 * r.win_rate:.1f}",
              "-" if r.expectancy_usdt is None else f"{r.expectancy_usdt:.4f}", f"{r.pnl_usdt:.4f}"]
             for r in card.by_regime])),
        "equity": dg.MetadataValue.md(f"![equity of every account](data:image/png;base64,{equity})"),
        "robustness": dg.MetadataValue.json(figures),
        **({"monte_carlo": dg.MetadataValue.md(f"![Monte Carlo of {robust.best}](data:image/png;base64,"
                                               f"{base64.b64encode(pictures[1].read_bytes()).decode('ascii')})")}
           if len(pictures) > 1 and pictures[1].name == "monte-carlo.png" else {}),
        "pictures": dg.MetadataValue.path(str(pictures[0].parent)),
        "candles_per_s": len(history.candles) / max(result.seconds, 1e-9),
    })


def _leaderboard_markdown(card: Scorecard) -> str:
    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    return markdown_table(
        ["#", "account", "kind", "return %", "max drawdown %", "Sharpe", "trades", "win %", "fees (USDT)"],
        [[r.rank, r.account, r.kind.value, number(r.return_pct, 2), f"{r.max_drawdown_pct:.2f}",
          number(r.sharpe, 2), r.trades, number(None if r.win_rate is None else 100 * r.win_rate, 1),
          f"{r.fees_usdt:.2f}"] for r in card.rows])
