"""Data-quality asset checks of the market data, written as great-expectations suites."""
