"""Venue adapters: wire formats and REST clients, one package per venue."""
