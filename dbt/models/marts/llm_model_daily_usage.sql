-- Each model's calls per day: outcomes, latency and cost (answers replayed from the cache are
-- counted apart and cost nothing).
select
    model_name,
    day,
    count(*) as calls,
    count(*) filter (where outcome = 'decided') as decided,
    count(*) filter (where outcome = 'rejected') as rejected,
    count(*) filter (where outcome = 'failed') as failed,
    count(*) filter (where from_cache) as from_cache,
    avg(latency_ms) as mean_latency_ms,
    percentile_cont(0.5) within group (order by latency_ms) as p50_latency_ms,
    percentile_cont(0.95) within group (order by latency_ms) as p95_latency_ms,
    sum(input_tokens) as input_tokens,
    sum(output_tokens) as output_tokens,
    sum(cost_usd) as cost_usd
from {{ ref('stg_llm_calls') }}
group by model_name, day
