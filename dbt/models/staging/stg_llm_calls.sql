-- One row per call to a model's provider (cached answers included, at no cost).
select
    call_id,
    request_id,
    time,
    (time at time zone 'UTC')::date as day,
    model_name,
    provider,
    model_id,
    symbol,
    purpose,
    outcome,
    from_cache,
    http_attempts,
    latency_ms,
    input_tokens,
    output_tokens,
    cost_usd
from {{ source('triplegain', 'llm_calls') }}
