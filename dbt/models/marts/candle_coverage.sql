-- The 1-minute candles per symbol: how many, over which window, and the holes in it.
with gaps as (
    select symbol, count(*) as gaps, sum(missing_minutes) as missing_minutes
    from {{ ref('candle_gaps') }}
    group by symbol
)
select
    c.symbol,
    count(*) as candles,
    min(c.minute) as first_minute,
    max(c.minute) as last_minute,
    (extract(epoch from max(c.minute) - min(c.minute)) / 60)::bigint + 1 as window_minutes,
    count(*) filter (where c.trade_count = 0) as quiet_minutes,
    coalesce(max(g.gaps), 0) as gaps,
    coalesce(max(g.missing_minutes), 0) as missing_minutes,
    count(*)::double precision
        / ((extract(epoch from max(c.minute) - min(c.minute)) / 60) + 1) as coverage
from {{ ref('stg_candles_1m') }} c
left join gaps g using (symbol)
group by c.symbol
