"""The RebalancingAgent's plan for each account, stored in ``rebalance_plans``."""

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from triplegain_core.portfolio.balances import MissingPriceError
from triplegain_core.portfolio.rebalance_review import StoredPlan, make_plan, plan_markdown
from triplegain_core.storage.portfolio_store import PortfolioStore
from triplegain_dagster import groups
from triplegain_dagster.defs.portfolio.regime import market_regime
from triplegain_dagster.defs.portfolio.snapshots import portfolio_snapshots
from triplegain_dagster.resources import PostgresResource, RebalancingResource


class RebalancePlanConfig(dg.Config):
    """Run configuration of ``rebalance_plan``."""

    account: str | None = Field(
        default=None, description="Account to plan for; unset: every account with a snapshot.",
    )


@dg.asset(
    group_name=groups.PORTFOLIO,
    deps=[market_regime, portfolio_snapshots],
    kinds={"python", "postgres"},
    description="Recommended rebalance per account (table `rebalance_plans`): target"
                " allocation, the triggers hit (drift > 10 points, one asset > 60%, gain > 20%,"
                " regime change), the trades back to target and the triangular cycles"
                " profitable net of fees. It only recommends: nothing is executed here, and any"
                " trade taken from a plan goes through the RiskAgent and its rules (1% risk per"
                " trade, 20% max position, mandatory stop, drawdown pause, daily loss limit).",
)
def rebalance_plan(
    context: dg.AssetExecutionContext,
    config: RebalancePlanConfig,
    postgres: PostgresResource,
    rebalancing: RebalancingResource,
) -> dg.MaterializeResult:
    """Evaluate the agent on each account's latest holdings and prices and upsert the plan."""
    agent = rebalancing.agent()
    now = datetime.now(UTC)
    plans: list[StoredPlan] = []
    unpriced: list[str] = []
    with postgres.connect() as conn:
        store = PortfolioStore(conn)
        for snapshot in store.latest_snapshots(config.account):
            inputs = store.plan_inputs(snapshot, rebalancing.regime_symbol,
                                       rebalancing.regime_timeframe)
            try:
                stored = make_plan(agent, inputs, now)
            except MissingPriceError as error:  # one unpriced account must not hide the others
                context.log.warning("%s: no plan: %s", snapshot.account, error)
                unpriced.append(f"`{snapshot.account}`: {error}")
                continue
            store.write_plan(stored)
            plans.append(stored)
            context.log.info("%s: %d trigger(s), %d trade(s)", stored.account,
                             len(stored.plan.triggers), len(stored.plan.trades))
    skipped = "".join(f"\n\nNo plan for {line}." for line in unpriced)
    if not plans:
        who = f"account `{config.account}`" if config.account else "any account"
        message = f"No priced portfolio snapshot for {who} yet: nothing to rebalance.{skipped}"
        return dg.MaterializeResult(metadata={"accounts": 0, "plan": dg.MetadataValue.md(message)})
    target = agent.config.target
    return dg.MaterializeResult(metadata={
        "accounts": len(plans),
        "accounts_with_trades": sum(1 for p in plans if p.plan.trades),
        "triggers": sum(len(p.plan.triggers) for p in plans),
        "trades": sum(len(p.plan.trades) for p in plans),
        "profitable_cycles": sum(len(p.plan.arbitrage) for p in plans),
        "plan": dg.MetadataValue.md(
            "\n\n".join(plan_markdown(p, target) for p in plans) + skipped),
    })
