"""The dbt project (``dbt/`` at the top of the checkout) and its manifest, parsed when stale.

dagster-dbt builds the assets from ``target/manifest.json``. It is parsed here when missing or
older than any file of the project, so a fresh clone and an edited model both load without a
build step; a lock keeps the code servers ``dagster dev`` starts at once from parsing together.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

DBT_PROJECT_DIR_ENV = "TRIPLEGAIN_DBT_PROJECT_DIR"

# The sources' parts that change the manifest (the target and log folders are dbt's output).
_PROJECT_FILES = ("dbt_project.yml", "profiles.yml")
_PROJECT_FOLDERS = ("models", "macros", "tests")


def dbt_project_dir() -> Path:
    """``$TRIPLEGAIN_DBT_PROJECT_DIR``, else the ``dbt`` folder of this checkout."""
    configured = os.environ.get(DBT_PROJECT_DIR_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[3] / "dbt"


def dbt_executable() -> str:
    """The ``dbt`` installed beside this interpreter (run workers need not have it on PATH)."""
    return str(Path(sys.executable).with_name("dbt"))


def _newest_source_mtime(project_dir: Path) -> float:
    files = [project_dir / name for name in _PROJECT_FILES]
    for folder in _PROJECT_FOLDERS:
        files.extend(path for path in (project_dir / folder).rglob("*") if path.is_file())
    return max(path.stat().st_mtime for path in files if path.exists())


def prepared_project() -> DbtProject:
    """The dbt project with a manifest no older than its sources (parsed here if needed)."""
    project = DbtProject(project_dir=dbt_project_dir())
    project.manifest_path.parent.mkdir(parents=True, exist_ok=True)
    with open(project.manifest_path.parent / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = project.manifest_path
        if not manifest.exists() or manifest.stat().st_mtime < _newest_source_mtime(project.project_dir):
            DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
                ["parse", "--quiet"], target_path=project.target_path).wait()
    return project


DBT_PROJECT = prepared_project()
