-- Market data plane: top-of-book snapshots beside trades and candles, and TimescaleDB's
-- compression and retention policies where the extension is present.
--
-- Source of truth for candles: the streamer's own `candles` table holds every timeframe
-- (1m, 5m, 15m, 1h, 1d), on plain PostgreSQL and on TimescaleDB alike, so both give identical
-- answers; no continuous aggregates. TimescaleDB only adds hypertables (0002 and below),
-- compression and retention.

-- One row per symbol and capture time; levels best first, prices and quantities side by side
-- (unnest(bid_price, bid_qty) WITH ORDINALITY gives the levels back). `depth` is the depth the
-- streamer keeps; a thin book may show fewer levels.
CREATE TABLE book_snapshots (
    symbol     text               NOT NULL,
    time       timestamptz        NOT NULL,
    depth      integer            NOT NULL CHECK (depth > 0),
    bid_price  double precision[] NOT NULL,
    bid_qty    double precision[] NOT NULL,
    ask_price  double precision[] NOT NULL,
    ask_qty    double precision[] NOT NULL,
    PRIMARY KEY (symbol, time),
    CHECK (cardinality(bid_price) = cardinality(bid_qty)
           AND cardinality(ask_price) = cardinality(ask_qty)
           AND cardinality(bid_price) <= depth AND cardinality(ask_price) <= depth)
);

-- Detect, don't assume: this block changes nothing unless 0002 could enable the extension.
-- Policy intervals are starting points; change them with remove_/add_*_policy.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('book_snapshots', 'time', chunk_time_interval => INTERVAL '1 day', migrate_data => true, if_not_exists => true);

        ALTER TABLE candles SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol, timeframe', timescaledb.compress_orderby = 'open_time');
        ALTER TABLE trades SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'ts, trade_id');
        ALTER TABLE book_snapshots SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'time');

        -- Compress once late trades and REST gap repair are long done with a chunk.
        PERFORM add_compression_policy('candles', compress_after => INTERVAL '30 days', if_not_exists => true);
        PERFORM add_compression_policy('trades', compress_after => INTERVAL '7 days', if_not_exists => true);
        PERFORM add_compression_policy('book_snapshots', compress_after => INTERVAL '2 days', if_not_exists => true);

        -- Candles are kept for ever (backtests); raw trades and book snapshots are not.
        PERFORM add_retention_policy('trades', drop_after => INTERVAL '365 days', if_not_exists => true);
        PERFORM add_retention_policy('book_snapshots', drop_after => INTERVAL '30 days', if_not_exists => true);
    END IF;
END
$$;
