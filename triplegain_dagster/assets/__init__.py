"""TripleGain's assets, one small module per concern, assembled in ``..definitions``.

The modules here do not use ``from __future__ import annotations``: Dagster reads the
parameter annotations (context, resources, config) when the decorators run.
"""
