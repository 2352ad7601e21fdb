"""When the models are asked: a deliberation round every hour and early when the executor sees a
strong signal, a council once a week; a checkpoint of the LLM accounts' open positions every
four hours."""

import dagster as dg

from triplegain_core.contracts.decision_streams import StrongSignalStream
from triplegain_core.llm.deliberation_config import DeliberationMode
from triplegain_dagster.defs.deliberation.checkpoints import position_checkpoints
from triplegain_dagster.defs.deliberation.model_performance import model_performance
from triplegain_dagster.defs.deliberation.rounds import DeliberationRoundConfig, llm_deliberation
from triplegain_dagster.resources import RedisResource

deliberation_job = dg.define_asset_job(
    "deliberation",
    selection=dg.AssetSelection.assets(llm_deliberation, model_performance),
    description="A deliberation round, then the scoring of every decision so far (whose weights"
                " the next round votes with).",
)

deliberation_schedule = dg.ScheduleDefinition(
    name="hourly_deliberation",
    target=deliberation_job,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="A deliberation round every hour (without a configured model it records that it"
                " decided nothing).",
)

council_schedule = dg.ScheduleDefinition(
    name="weekly_council",
    target=deliberation_job,
    cron_schedule="30 0 * * 1",
    run_config=dg.RunConfig(ops={"llm_deliberation": DeliberationRoundConfig(mode=DeliberationMode.COUNCIL)}),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="A council round every Monday at 00:30 UTC, whatever the configured mode: every model"
                " pitches, the others review anonymously, the chairman decides for `llm:council`.",
)

checkpoint_job = dg.define_asset_job(
    "checkpoints",
    selection=dg.AssetSelection.assets(position_checkpoints),
    description="Re-evaluate every open position of the LLM accounts: STAY, EXIT, FLIP or REDUCE.",
)

checkpoint_schedule = dg.ScheduleDefinition(
    name="position_checkpoints_every_4h",
    target=checkpoint_job,
    cron_schedule="0 */4 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="A checkpoint of the LLM accounts' open positions at 00, 04, 08, 12, 16 and 20 UTC.",
)


@dg.sensor(
    target=deliberation_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a deliberation round when the executor publishes a strong technical"
                " signal on the Redis stream `stream:signals:strong`; the cursor is the stream id,"
                " so each signal asks at most once, and a burst of signals asks once.",
)
def strong_signal_sensor(context: dg.SensorEvaluationContext, redis: RedisResource) -> dg.SensorResult:
    """One run request for all strong signals since the cursor, tagged with what they were."""
    with redis.connected() as client:
        last_id, signals = StrongSignalStream(client).after(context.cursor or "0")
    if not signals:
        return dg.SensorResult(skip_reason=dg.SkipReason("No new strong signal."), cursor=last_id)
    strongest = max(signals, key=lambda s: s.strength)
    summary = ", ".join(f"{s.strategy} {s.direction.value} {s.symbol} ({s.strength:.2f})" for s in signals[-5:])
    context.log.info("%d strong signals: %s", len(signals), summary)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(
            run_key=f"strong-signal:{last_id}",
            tags={"trigger": "strong_signal", "signal": strongest.signal_id[:60],
                  "symbol": strongest.symbol, "strength": f"{strongest.strength:.2f}"},
        )],
        cursor=last_id,
    )
