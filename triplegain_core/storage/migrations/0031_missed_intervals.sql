-- Holes in the stored market data that the streamer could not fill from the stream or its
-- in-stream REST backfill: each is retried with a backoff until REST brings every missing
-- trade back. While one is open (filled_at null), the candles_1m_complete data-quality check
-- fails with ERROR severity. A hole found twice (a restart re-reporting it) is one row.

CREATE TABLE missed_intervals (
    id               bigserial   PRIMARY KEY,
    symbol           text        NOT NULL,
    from_ts          timestamptz NOT NULL,
    to_ts            timestamptz NOT NULL,
    first_trade_id   bigint,
    last_trade_id    bigint,
    reason           text        NOT NULL CHECK (reason IN ('gap', 'reconnect')),
    found_at         timestamptz NOT NULL DEFAULT now(),
    attempts         integer     NOT NULL DEFAULT 0,
    last_error       text,
    filled_at        timestamptz,
    CHECK (to_ts > from_ts),
    UNIQUE (symbol, from_ts, to_ts)
);

CREATE INDEX missed_intervals_open ON missed_intervals (symbol, from_ts) WHERE filled_at IS NULL;
