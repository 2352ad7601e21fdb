"""The ``model_performance`` asset: every model's decisions scored against what the market did next.

Each stored decision (:mod:`triplegain_core.storage.decision_store`) is followed over the 1m
candles after it; each model gets a scorecard (answer rate, hit rate, return, Brier
calibration, cost, latency) and its paper account's return. The ModelSelector turns them into
the voting weights and the primary model the next deliberation round uses. The leaderboard
ranks the models' (and the consensus's) own paper accounts side by side.
"""

from bisect import bisect_left
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg

from triplegain_core.decisions.published import PublishedDecision, model_account
from triplegain_core.llm.decision_outcomes import DecisionOutcome, ScoringRules, score_decision
from triplegain_core.llm.leaderboard import leaderboard, render_markdown
from triplegain_core.llm.model_performance import ModelPerformance, scorecards
from triplegain_core.llm.model_selector import ModelScore, ModelSelector, Selection
from triplegain_core.model.market import us_to_datetime
from triplegain_core.reporting.reports import markdown_table
from triplegain_core.storage.decision_store import DecisionStore
from triplegain_core.storage.market_store import MarketStore
from triplegain_core.storage.model_accounts import model_accounts
from triplegain_core.storage.model_scores import ScoredModel, latest_primary, write_scores
from triplegain_core.storage.trading_store import TradingStore
from triplegain_dagster import groups
from triplegain_dagster.defs.deliberation.rounds import llm_deliberation
from triplegain_dagster.resources import PostgresResource


class ModelPerformanceConfig(dg.Config):
    """Run configuration of ``model_performance``."""

    horizon_minutes: int = 60
    hold_band: float = 0.005


def _outcomes(conn: psycopg.Connection, rules: ScoringRules) -> list[DecisionOutcome]:
    """Every stored decision scored; each symbol's candles are read once, over the span its
    decisions and their horizons cover."""
    market = MarketStore(conn)
    by_symbol: dict[str, list[PublishedDecision]] = defaultdict(list)
    for record in DecisionStore(conn).decisions():
        by_symbol[record.decision.decision.symbol].append(record.decision)
    horizon = timedelta(minutes=rules.horizon_minutes)
    outcomes = []
    for symbol, decisions in by_symbol.items():
        start = us_to_datetime(min(d.market_time_us for d in decisions))
        end = us_to_datetime(max(d.market_time_us for d in decisions)) + horizon
        candles = market.candles(symbol, "1m", start, end)
        opens = [c.open_time_us for c in candles]
        for published in decisions:
            # Only this decision's horizon is handed over: the candles are in time order.
            first = bisect_left(opens, published.market_time_us)
            last = bisect_left(opens, published.market_time_us + rules.horizon_minutes * 60_000_000)
            outcome = score_decision(published.source, us_to_datetime(published.market_time_us),
                                     published.decision, candles[first:last], rules)
            if outcome is not None:
                outcomes.append(outcome)
    outcomes.sort(key=lambda o: o.time)
    return outcomes


def _account_return(store: TradingStore, model: str) -> float | None:
    curve = store.equity_curve(model_account(model))
    if len(curve) < 2 or curve[0][1] <= 0:
        return None
    return (curve[-1][1] / curve[0][1] - 1.0) * 100.0


def _selection(cards: list[ModelPerformance], returns: dict[str, float | None], incumbent: str | None) -> Selection:
    scores = [ModelScore(model=c.model_name, return_pct=returns.get(c.model_name) or 0.0, brier=c.brier,
                         hit_rate=c.hit_rate, decisions=c.scored)
              for c in cards if c.brier is not None and c.hit_rate is not None]
    return ModelSelector([c.model_name for c in cards], primary=incumbent).update(scores)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(rows: list[ScoredModel]) -> str:
    return markdown_table(
        ["model", "calls", "answered", "scored", "hit rate", "mean return %", "Brier", "account return %",
         "cost USD", "latency ms", "weight"],
        [[("**" + r.performance.model_name + "** (primary)") if r.is_primary else r.performance.model_name,
          r.performance.calls, _fmt(r.performance.answer_rate, ".0%"), r.performance.scored,
          _fmt(r.performance.hit_rate, ".0%"), _fmt(r.performance.mean_return_pct, "+.2f"),
          _fmt(r.performance.brier, ".3f"), _fmt(r.account_return_pct, "+.2f"),
          f"{r.performance.cost_usd:.4f}", _fmt(r.performance.mean_latency_ms, ".0f"), f"{r.weight:.2f}"]
         for r in rows],
    )


@dg.asset(
    group_name=groups.DELIBERATION,
    deps=[llm_deliberation],
    kinds={"python", "postgres"},
    description="Each model's decisions scored against the market that followed (hit rate, return,"
                " calibration, cost, latency) and the voting weights the ModelSelector derives.",
)
def model_performance(
    context: dg.AssetExecutionContext, config: ModelPerformanceConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Score every stored decision, store the scorecards and weights, show the table."""
    rules = ScoringRules(horizon_minutes=config.horizon_minutes, hold_band=config.hold_band)
    computed_at = datetime.now(UTC)
    with postgres.connect() as conn:
        outcomes = _outcomes(conn, rules)
        cards = scorecards(DecisionStore(conn).call_summaries(), outcomes)
        if not cards:
            message = "No LLM call stored yet: nothing to score."
            context.log.info(message)
            return dg.MaterializeResult(metadata={"models": 0, "scores": dg.MetadataValue.md(message)})
        trading = TradingStore(conn)
        returns = {c.model_name: _account_return(trading, c.model_name) for c in cards}
        selection = _selection(cards, returns, latest_primary(conn))
        rows = write_scores(conn, computed_at, cards, returns, selection)
        board = leaderboard(model_accounts(conn))
    context.log.info("scored %d decisions of %d models; primary %s (%s)",
                     len(outcomes), len(cards), selection.primary, selection.reason)
    return dg.MaterializeResult(metadata={
        "models": len(cards),
        "scored_decisions": len(outcomes),
        "primary": selection.primary or "-",
        "selection": selection.reason,
        "scores": dg.MetadataValue.md(_table(rows)),
        "leaderboard": dg.MetadataValue.md(render_markdown(board)),
    })
