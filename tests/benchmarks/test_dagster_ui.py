"""BENCH dagster_ui_ready_s: from `triplegain ui` (what `make ui` runs) to the lineage answering.

The UI is started as a user starts it, on the project's instance (Dagster's database beside the
test database), and asked through its GraphQL endpoint for the asset nodes the lineage page
draws; the figure is the time from the process's start to the first answer that holds every
asset group of the code location.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.dagster_ui import RunningUI
from triplegain_dagster import groups

REPO_ROOT = Path(__file__).resolve().parents[2]
GROUPS = {groups.MARKET_DATA, groups.HISTORY, groups.FEATURES, groups.PORTFOLIO, groups.DELIBERATION,
          groups.REPORTS, groups.BACKTESTS, groups.MARTS, groups.TRADING}
QUERY = json.dumps({"query": "{ assetNodes { groupName } }"}).encode()
DEADLINE_S = 240


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _lineage_groups(port: int) -> set[str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=QUERY,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        nodes = json.load(response)["data"]["assetNodes"]
    return {node["groupName"] for node in nodes}


def test_dagster_ui_ready(database_url: str, redis_url: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "TRIPLEGAIN_DATABASE_URL": database_url, "TRIPLEGAIN_REDIS_URL": redis_url,
           "TRIPLEGAIN_DATA_DIR": str(tmp_path)}
    env.pop("DAGSTER_HOME", None)
    started = time.perf_counter()
    ui = RunningUI(port, env, REPO_ROOT)
    seen: set[str] = set()
    try:
        while time.perf_counter() - started < DEADLINE_S and seen != GROUPS:
            assert ui.alive(), "the UI exited"
            try:
                seen = _lineage_groups(port)
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, TypeError):
                time.sleep(0.2)
        ready_s = time.perf_counter() - started
    finally:
        ui.stop()
    assert seen == GROUPS, f"after {DEADLINE_S} s the lineage showed only {sorted(seen)}"
    print(f"\nBENCH dagster_ui_ready_s {ready_s:.1f} s")
