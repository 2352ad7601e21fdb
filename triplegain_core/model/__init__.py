"""The vocabulary: instruments, trades, candles, book levels, signals, orders and fills."""
