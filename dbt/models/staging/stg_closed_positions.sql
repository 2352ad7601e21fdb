-- Closed positions with their result and fees in USDT. The executor values a position's PnL in
-- USDT when it closes (`realized_pnl_usdt`); a BTC-quoted position it could not value, and the
-- fees of every BTC-quoted position, are valued at the BTC/USDT close of the minute it closed
-- (the last one at or before it).
with closed as (
    select *
    from {{ source('triplegain', 'positions') }}
    where status = 'closed'
),
valued as (
    select
        p.*,
        split_part(p.symbol, '/', 2) as quote_asset,
        case
            when split_part(p.symbol, '/', 2) = 'USDT' then 1.0
            when p.realized_pnl_usdt is not null and p.realized_pnl <> 0
                then p.realized_pnl_usdt / p.realized_pnl
            else btc.close
        end as quote_usdt
    from closed p
    left join lateral (
        select c.close
        from {{ source('triplegain', 'candles') }} c
        where c.symbol = 'BTC/USDT' and c.timeframe = '1m' and c.open_time <= p.closed_at
        order by c.open_time desc
        limit 1
    ) btc on split_part(p.symbol, '/', 2) = 'BTC'
)
select
    position_id,
    account,
    symbol,
    strategy,
    direction,
    opened_at,
    closed_at,
    exit_reason,
    quote_asset,
    quote_usdt,
    realized_pnl,
    coalesce(realized_pnl_usdt, realized_pnl * quote_usdt) as realized_pnl_usdt,
    fees,
    fees * quote_usdt as fees_usdt,
    extract(epoch from closed_at - opened_at) as holding_s
from valued
