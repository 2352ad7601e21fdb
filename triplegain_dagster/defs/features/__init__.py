"""Features: the indicator tables computed from the stored candles."""
