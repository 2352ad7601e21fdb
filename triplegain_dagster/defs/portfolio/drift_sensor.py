"""The rebalance plan is requested when an account's allocation drifts past its triggers."""

import json

import dagster as dg

from triplegain_core.portfolio.balances import MissingPriceError
from triplegain_core.portfolio.rebalance_review import WatchState, triggers_for, watch
from triplegain_core.storage.portfolio_store import PortfolioStore
from triplegain_dagster.defs.portfolio.rebalance import RebalancePlanConfig, rebalance_plan
from triplegain_dagster.resources import PostgresResource, RebalancingResource

rebalance_job = dg.define_asset_job(
    "rebalance",
    selection=dg.AssetSelection.assets(rebalance_plan),
    description="The RebalancingAgent's plan for one account (the run config names it).",
)


def _load_cursor(cursor: str | None) -> dict[str, WatchState]:
    return {account: WatchState.model_validate(state)
            for account, state in json.loads(cursor or "{}").items()}


def _dump_cursor(states: dict[str, WatchState]) -> str:
    return json.dumps({account: state.model_dump(mode="json")
                       for account, state in sorted(states.items())})


@dg.sensor(
    target=rebalance_job,
    minimum_interval_seconds=60,
    # Running from the start: rebalancing is sensor-driven, and the plan only recommends.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests `rebalance_plan` for an account whose latest portfolio snapshot"
                " fires a RebalancingAgent trigger (by default: drift > 10 points, one asset"
                " > 60%, gain > 20% since the last rebalance, regime change). The cursor"
                " remembers the snapshot evaluated per account, so no snapshot is requested"
                " twice; unchanged triggers are re-planned after `replan_after_minutes`.",
)
def rebalance_drift_sensor(
    context: dg.SensorEvaluationContext,
    postgres: PostgresResource,
    rebalancing: RebalancingResource,
) -> list[dg.RunRequest] | dg.SkipReason:
    """Evaluate the triggers on each account's latest snapshot; one run request per account
    that needs a plan, else the reason there is none."""
    states = _load_cursor(context.cursor)
    agent = rebalancing.agent()
    requests: list[dg.RunRequest] = []
    reasons: list[str] = []
    with postgres.connect() as conn:
        store = PortfolioStore(conn)
        snapshots = store.latest_snapshots()
        for snapshot in snapshots:
            account = snapshot.account
            inputs = store.plan_inputs(snapshot, rebalancing.regime_symbol,
                                       rebalancing.regime_timeframe)
            try:
                hits = triggers_for(agent, inputs)
            except MissingPriceError as error:
                reasons.append(f"{account}: not valued yet ({error})")
                continue
            decision = watch(states.get(account), snapshot.time, hits,
                             rebalancing.replan_after())
            states[account] = decision.state
            reasons.append(f"{account}: {decision.reason}")
            if decision.request:
                context.log.info("%s: requesting a plan, %s", account, decision.reason)
                requests.append(dg.RunRequest(
                    run_key=f"rebalance:{account}:{snapshot.time.isoformat()}",
                    asset_selection=[rebalance_plan.key],
                    run_config=dg.RunConfig(
                        ops={"rebalance_plan": RebalancePlanConfig(account=account)}),
                    tags={"account": account, "triggers": ",".join(decision.state.triggers)},
                ))
    context.update_cursor(_dump_cursor(states))
    if requests:
        return requests
    if not snapshots:
        return dg.SkipReason("No portfolio snapshots stored yet: nothing to rebalance.")
    return dg.SkipReason("No rebalance needed. " + "; ".join(reasons))
