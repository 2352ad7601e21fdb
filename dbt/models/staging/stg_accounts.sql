-- Every trading account seen in the executor's snapshots and positions, with its kind: the
-- TechnicalAgent's own account, a strategy's (`<base>:<strategy>`), a model's (`llm:<model>`) or
-- the models' consensus (`llm:consensus`).
with accounts as (
    select distinct account from {{ source('triplegain', 'portfolio_snapshots') }}
    union
    select distinct account from {{ source('triplegain', 'positions') }}
)
select
    account,
    case
        when account = 'llm:consensus' then 'consensus'
        when account like 'llm:%' then 'model'
        when position(':' in account) > 0 then 'strategy'
        else 'technical'
    end as account_kind
from accounts
