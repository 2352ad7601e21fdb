"""Standalone async processes: replay exchange, market-data streamer, executor, and the CLI."""
