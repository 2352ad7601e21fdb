"""Portfolio: balances, positions, performance metrics and rebalancing."""
