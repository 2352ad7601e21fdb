"""Market data: candle building and resampling, snapshots, the live market view, sources, gaps."""
