-- The executor's fills, one row per fill (the relationships tests of fills -> orders -> risk
-- checks attach here, where dagster-dbt can make them checks).
select
    fill_id,
    order_id,
    account,
    time,
    symbol,
    side,
    quantity,
    price,
    quantity * price as notional_quote,
    split_part(symbol, '/', 2) as quote_asset,
    fee,
    fee_asset
from {{ source('triplegain', 'fills') }}
