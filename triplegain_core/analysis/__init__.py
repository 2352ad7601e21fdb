"""Analysis: indicators (batch and incremental), chart patterns, regime, the TechnicalAgent."""
