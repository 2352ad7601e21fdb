"""Deliberation: the LLM rounds, position checkpoints, model scoring, and when they run."""
