"""The executor process: hosts the trading kernel on the 100 ms grid over the Redis hot state."""
