"""Portfolio: the market regime, account snapshots, the rebalance plan and the drift sensor that asks for it."""
