"""Every Dagster definition of TripleGain, assembled in one place: the code location's entry.

The definitions live in ``defs/<concern>/`` (market_data, history, features, portfolio,
deliberation, reports) and are discovered there; ``dg.toml`` beside this module names the
folder.
"""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
