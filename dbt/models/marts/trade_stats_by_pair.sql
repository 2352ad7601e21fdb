-- Closed positions' results per pair over every account, in USDT.
select
    symbol,
    count(distinct account) as accounts,
    count(*) as trades,
    avg((realized_pnl > 0)::int)::double precision as win_rate,
    avg(realized_pnl_usdt) as expectancy_usdt,
    sum(realized_pnl_usdt) as realized_pnl_usdt,
    sum(fees_usdt) as fees_usdt
from {{ ref('stg_closed_positions') }}
group by symbol
