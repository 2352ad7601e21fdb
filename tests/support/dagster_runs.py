"""Materializing assets in a test together with every check of the definitions given.

``dg.materialize`` runs the checks of the assets it materializes only: the checks of an
external asset (the streamer's tables, which Dagster observes but never writes) must be
selected, as the jobs do.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

WITH_CHECKS = dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks()


def materialize_with_checks(definitions: Sequence[Any], **kwargs: Any) -> dg.ExecuteInProcessResult:
    """``dg.materialize`` of ``definitions`` (assets, specs and checks), every check selected."""
    return dg.materialize(definitions, selection=WITH_CHECKS, **kwargs)
