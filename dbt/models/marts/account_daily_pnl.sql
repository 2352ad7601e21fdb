-- Daily PnL of every account: the paper accounts the executor trades (the TechnicalAgent, each
-- strategy, each model, the consensus) from their equity snapshots, and every account and
-- baseline of the stored backtests from their hourly equity. A day's PnL is its closing equity
-- less the previous day's (the first day: less its opening equity).
with live as (
    select
        'paper' as origin,
        s.account,
        a.account_kind,
        s.time,
        s.equity_usdt
    from {{ source('triplegain', 'portfolio_snapshots') }} s
    join {{ ref('stg_accounts') }} a using (account)
),
backtested as (
    select
        'backtest:' || e.run_id as origin,
        e.account,
        a.kind as account_kind,
        e.time,
        e.equity_usdt
    from {{ source('triplegain', 'backtest_equity') }} e
    join {{ source('triplegain', 'backtest_accounts') }} a using (run_id, account)
),
snapshots as (
    select *, (time at time zone 'UTC')::date as day from live
    union all
    select *, (time at time zone 'UTC')::date as day from backtested
),
days as (
    select distinct on (origin, account, day)
        origin, account, account_kind, day,
        first_value(equity_usdt) over w as open_equity_usdt,
        last_value(equity_usdt) over w as close_equity_usdt,
        count(*) over w as snapshots
    from snapshots
    window w as (partition by origin, account, day order by time
                 rows between unbounded preceding and unbounded following)
    order by origin, account, day
)
select
    origin,
    account,
    account_kind,
    day,
    open_equity_usdt,
    close_equity_usdt,
    close_equity_usdt - coalesce(
        lag(close_equity_usdt) over (partition by origin, account order by day),
        open_equity_usdt
    ) as pnl_usdt,
    snapshots
from days
