"""`triplegain ui` started and stopped by a test: it never outlives the test process.

It runs in a process group of its own and is sent SIGTERM when the test process dies, however it
dies (``PR_SET_PDEATHSIG``, kept across the exec into `dagster dev`, which `triplegain ui` makes
with the default handling of the stop signals). A test stops it by asking `dagster dev`; should
it still be there a minute later, the group is killed. Its code servers start sessions of their
own, so a UI stopped while it was still starting could leave them behind: whatever descended from
it when it was asked to stop and still runs after is killed too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 60


def _stop_with_the_test() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class RunningUI:
    """A `triplegain ui` a test started (see the module)."""

    def __init__(self, port: int, env: dict[str, str], cwd: Path) -> None:
        self._ui = subprocess.Popen([sys.executable, "-m", "streamer.cli.main", "ui", "--port", str(port)], cwd=cwd,
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=_stop_with_the_test)

    def alive(self) -> bool:
        """Whether the UI still runs."""
        return self._ui.poll() is None

    def stop(self) -> None:
        """Stop the UI and everything it started."""
        try:
            descendants = psutil.Process(self._ui.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        self._ui.terminate()
        try:
            self._ui.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(self._ui.pid, signal.SIGKILL)
            self._ui.wait(STOP_GRACE_S)
        for process in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(descendants, timeout=STOP_GRACE_S)
