"""Market data: the trades and 1m candles the streamer and the backfill store, and their quality checks."""
