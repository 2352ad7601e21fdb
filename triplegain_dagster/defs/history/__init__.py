"""History: the partitioned REST backfill of past trades and candles."""
