-- What each account traded per pair: fills, the volume in the quote asset, and the fees paid in
-- each asset they were charged in (fees stay in their own asset: no price is assumed).
select
    f.account,
    f.symbol,
    f.quote_asset,
    f.fee_asset,
    count(*) as fills,
    count(distinct f.order_id) as orders,
    count(*) filter (where f.side = 'buy') as buys,
    count(*) filter (where f.side = 'sell') as sells,
    sum(f.notional_quote) as volume_quote,
    sum(f.fee) as fees,
    count(*) filter (where not rc.approved) as fills_of_refused_checks
from {{ ref('stg_fills') }} f
join {{ ref('stg_orders') }} o using (order_id)
join {{ source('triplegain', 'risk_checks') }} rc on rc.check_id = o.check_id
group by f.account, f.symbol, f.quote_asset, f.fee_asset
