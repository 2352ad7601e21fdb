-- The 1-minute candles, one per symbol and minute (quiet minutes included: the exchange
-- publishes them, and so do the streamer and the backfill).
select
    symbol,
    date_trunc('minute', open_time) as minute,
    open,
    high,
    low,
    close,
    volume,
    trade_count
from {{ source('triplegain', 'candles') }}
where timeframe = '1m'
