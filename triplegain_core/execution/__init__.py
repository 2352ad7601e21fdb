"""Execution: the fill model, orders, the paper executor, accounts and the trading kernel."""
