"""``make`` checks the machine before it creates ``.venv``: one line naming what is missing.

The Makefile runs in a copy of the checkout's Makefile and pyproject.toml with stand-in Pythons
(a script that reports another version, one without the venv module, one that does not run).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    return tmp_path


def _script(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def _make(checkout: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=checkout, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize(("python", "expected"), [
    ("py310", "is Python 3.10: TripleGain needs Python 3.11 or 3.12"),
    ("py313", "is Python 3.13: TripleGain needs Python 3.11 or 3.12"),
    ("novenv", "-m venv is missing: sudo apt-get install python3-venv"),
    ("/bin/false", "does not run: TripleGain needs Python 3.11 or 3.12"),
    ("/nonexistent/python3", "does not run: TripleGain needs Python 3.11 or 3.12"),
])
def test_a_missing_prerequisite_is_one_line_and_nothing_is_created(checkout: Path, python: str,
                                                                   expected: str) -> None:
    stand_ins = {
        "py310": _script(checkout, "py310", "echo 3.10"),
        "py313": _script(checkout, "py313", "echo 3.13"),
        # A Python like Debian's without python3-venv: everything works but ensurepip.
        "novenv": _script(checkout, "novenv", f'case "$*" in *ensurepip*) exit 1;; esac\nexec {sys.executable} "$@"'),
    }
    completed = _make(checkout, "install", f"PYTHON={stand_ins.get(python, python)}")
    assert completed.returncode != 0
    assert completed.stdout == ""
    (line,) = completed.stderr.splitlines()
    assert expected in line
    assert stand_ins.get(python, python) in line
    assert not (checkout / ".venv").exists()


def test_a_supported_python_with_venv_goes_on_to_create_the_environment(checkout: Path) -> None:
    completed = _make(checkout, "-n", "install", f"PYTHON={sys.executable}")
    assert completed.returncode == 0, completed.stderr
    assert f"{sys.executable} -m venv .venv" in completed.stdout
    assert "virtualenv" not in completed.stdout
