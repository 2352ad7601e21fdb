"""The house rules that keep a newcomer able to find things: few root modules, one name per concept."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("triplegain_core", "streamer", "triplegain_dagster")
FIRST_PARTY = (*PACKAGES, "tests")
# The strategy plugin contract: every strategy module names its parameters ``Config``.
PLUGIN_NAMES = {"Config"}
PLUGINS = ROOT / "triplegain_core" / "strategies" / "builtin"


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def _root_modules(package: str) -> list[str]:
    return sorted(p.name for p in (ROOT / package).glob("*.py"))


def test_the_core_keeps_at_most_six_modules_at_its_root() -> None:
    assert len(_root_modules("triplegain_core")) <= 6, _root_modules("triplegain_core")


def test_the_streamer_keeps_at_most_four_modules_at_its_root() -> None:
    assert len(_root_modules("streamer")) <= 4, _root_modules("streamer")


def test_every_public_class_has_one_name_in_the_whole_project() -> None:
    """Two public classes with one name are twins: a reader cannot tell which one a name means."""
    where: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in _modules(package):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    if path.parent == PLUGINS and node.name in PLUGIN_NAMES:
                        continue
                    where[node.name].append(str(path.relative_to(ROOT)))
    twins = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert twins == {}


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_no_first_party_name_is_imported_under_another_name() -> None:
    """A class or function imported under an alias dodges a clash the names should not have.

    A module may be bound to a short name (``indicators as ind``): that renames no concept.
    """
    renamed = []
    for package in FIRST_PARTY:
        for path in _modules(package):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(FIRST_PARTY):
                    renamed += [f"{path.relative_to(ROOT)}: {a.name} as {a.asname}" for a in node.names
                                if a.asname and not _is_module(f"{node.module}.{a.name}")]
    assert renamed == []
