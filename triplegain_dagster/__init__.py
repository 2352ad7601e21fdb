"""Dagster definitions for TripleGain."""
