-- The executor's orders, one row per order.
select
    order_id,
    check_id,
    position_id,
    account,
    time,
    symbol,
    side,
    purpose,
    order_type,
    state,
    quantity,
    filled_quantity
from {{ source('triplegain', 'orders') }}
