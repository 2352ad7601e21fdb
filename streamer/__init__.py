"""The standalone processes, one package per role: ingest, executor, replay, demo, and the CLI."""
