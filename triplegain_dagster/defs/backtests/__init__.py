"""Backtests: every account over stored history, beside the baselines."""
