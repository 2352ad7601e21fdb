"""Kraken: WebSocket v2 messages, the book with its checksum, REST history via ccxt."""
