"""No silent skips in CI: ``.ci/run`` requires ``../shared/data`` (and Chromium), and the
``shared_data`` fixture then fails a test that needs the missing folder instead of skipping it.

pytest runs in a subprocess on a tiny test file that asks for the fixture, with the data folder
pointed at a folder that does not exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIRE = "TRIPLEGAIN_REQUIRE_SHARED_DATA"
REQUIRE_CHROMIUM = "TRIPLEGAIN_REQUIRE_CHROMIUM"


def _run_tiny_suite(tmp_path: Path, require: bool) -> subprocess.CompletedProcess[str]:
    suite = tmp_path / "suite"
    suite.mkdir()
    # The project's own fixture (only it: the rest of its conftest is about its folders).
    (suite / "conftest.py").write_text("from tests.conftest import shared_data\n")
    (suite / "test_needs_data.py").write_text(
        "def test_needs_data(shared_data):\n    assert shared_data.is_dir()\n")
    env = {key: value for key, value in os.environ.items() if key != REQUIRE}
    env["TRIPLEGAIN_SHARED_DATA"] = str(tmp_path / "no-such-folder")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    if require:
        env[REQUIRE] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:randomly", "-p", "no:cacheprovider",
         "-o", "addopts=", "--rootdir", str(suite), str(suite)],
        cwd=suite, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_missing_shared_data_fails_when_required(tmp_path: Path) -> None:
    result = _run_tiny_suite(tmp_path, require=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout  # the fixture failed: the test errors, never skips
    assert "skipped" not in result.stdout
    assert f"{REQUIRE} is set, so it is required" in result.stdout
    assert "no-such-folder is absent" in result.stdout


def test_missing_shared_data_skips_with_its_reason_on_a_bare_machine(tmp_path: Path) -> None:
    result = _run_tiny_suite(tmp_path, require=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "no-such-folder is absent (it lives beside the checkout)" in result.stdout


def test_ci_run_requires_the_shared_data_and_chromium(tmp_path: Path) -> None:
    """``.ci/run`` in a copy of the checkout whose ``make test`` reports the variables."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO_ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "Makefile").write_text(
        f"test:\n\t@echo \"{REQUIRE}=$${REQUIRE}\"\n\t@echo \"{REQUIRE_CHROMIUM}=$${REQUIRE_CHROMIUM}\"\n")
    # Chromium found on the PATH: the script must not install it (this test runs no apt-get).
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("chromium", "chromedriver"):
        (tools / name).write_text("#!/bin/sh\n")
        (tools / name).chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in (REQUIRE, REQUIRE_CHROMIUM)}
    env["PATH"] = os.pathsep.join([str(tools), env.get("PATH", "")])
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert f"{REQUIRE}=1" in result.stdout.splitlines()
    assert f"{REQUIRE_CHROMIUM}=1" in result.stdout.splitlines()
