-- How far each model's stated confidence is from how often its trades won: its executed
-- decisions whose position has closed, by confidence bucket of a tenth. A well calibrated
-- model's hit rate is close to its mean confidence in every bucket.
with outcomes as (
    select
        d.source as model,
        d.confidence,
        p.realized_pnl > 0 as won
    from {{ source('triplegain', 'llm_decisions') }} d
    join {{ source('triplegain', 'risk_checks') }} rc
        on rc.intent_id = d.decision_id and rc.account = d.account and rc.approved
    join {{ ref('stg_closed_positions') }} p on p.position_id = rc.position_id
    where d.action in ('LONG', 'SHORT')
)
select
    model,
    least(floor(confidence * 10), 9)::int as bucket,
    least(floor(confidence * 10), 9) / 10.0 as bucket_low,
    least(floor(confidence * 10), 9) / 10.0 + 0.1 as bucket_high,
    count(*) as trades,
    avg(confidence) as mean_confidence,
    avg(won::int)::double precision as hit_rate,
    avg(confidence) - avg(won::int) as overconfidence
from outcomes
group by model, least(floor(confidence * 10), 9)
