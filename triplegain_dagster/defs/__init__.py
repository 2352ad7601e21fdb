"""TripleGain's Dagster definitions, one folder per concern, loaded together by
``triplegain_dagster.definitions`` (``dagster.components.load_from_defs_folder``).

Every module here is imported and its module-level definitions collected, so a definition lives
in exactly one module and others import it only to depend on it. The modules do not use
``from __future__ import annotations``: Dagster reads the parameter annotations (context,
resources, config) when the decorators run. Schedules and sensors always target a named asset
job; asset groups are named in ``triplegain_dagster.groups``, after these folders.
"""
