"""The ingest process: exchange WebSocket -> candles -> PostgreSQL and Redis, with gap repair."""
