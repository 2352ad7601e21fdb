"""Trading strategies as plugins: the contract, discovery, selection, the runner and replay."""
