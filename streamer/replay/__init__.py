"""The replay exchange: a local stand-in speaking Kraken's WebSocket v2 and REST APIs."""
