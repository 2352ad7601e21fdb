-- Runs of missing minutes in the 1-minute candles: two stored minutes of a symbol more than a
-- minute apart. Quiet minutes are candles, so a row here is a true hole.
with steps as (
    select
        symbol,
        minute,
        lag(minute) over (partition by symbol order by minute) as previous_minute
    from {{ ref('stg_candles_1m') }}
)
select
    symbol,
    previous_minute as after_minute,
    minute as before_minute,
    (extract(epoch from minute - previous_minute) / 60)::bigint - 1 as missing_minutes
from steps
where minute - previous_minute > interval '1 minute'
