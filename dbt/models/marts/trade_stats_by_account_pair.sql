-- Closed positions' results per account and pair, in USDT: how often they win, what a trade
-- earns on average (expectancy), and the fees paid.
select
    p.account,
    a.account_kind,
    p.symbol,
    count(*) as trades,
    count(*) filter (where p.realized_pnl > 0) as wins,
    avg((p.realized_pnl > 0)::int)::double precision as win_rate,
    avg(p.realized_pnl_usdt) as expectancy_usdt,
    avg(p.realized_pnl_usdt) filter (where p.realized_pnl > 0) as average_win_usdt,
    avg(p.realized_pnl_usdt) filter (where p.realized_pnl <= 0) as average_loss_usdt,
    sum(p.realized_pnl_usdt) as realized_pnl_usdt,
    sum(p.fees_usdt) as fees_usdt,
    avg(p.holding_s) as average_holding_s
from {{ ref('stg_closed_positions') }} p
join {{ ref('stg_accounts') }} a using (account)
group by p.account, a.account_kind, p.symbol
