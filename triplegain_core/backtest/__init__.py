"""Backtests: the trading kernel over stored history, with baselines and the statistics to judge them."""
