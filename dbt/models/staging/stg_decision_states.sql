-- Every state a model's decision reached (the lifecycle's transitions), once per state.
select
    d.decision_id,
    d.source,
    d.account,
    d.action,
    d.confidence,
    d.market_time,
    e.target as state,
    min(e.at) as reached_at
from {{ source('triplegain', 'llm_decisions') }} d
join {{ source('triplegain', 'decision_events') }} e using (decision_id)
group by d.decision_id, d.source, d.account, d.action, d.confidence, d.market_time, e.target
