"""The Dagster UI in a real browser: headless Chromium (the Debian package) driven by Selenium.

As a user meets it: `triplegain demo` (short) on the embedded servers, then `triplegain ui` (what
`make ui` runs) on the same data folder. The browser checks that the lineage shows every asset
group, that the report's equity image renders, that a failing check shows as failed (the demo
replays a market long past, so the freshness check of the candles fails), and that a
materialization launched with the UI's own button completes (through the run queue, behind
the plans the drift sensor requests on start).

Without Chromium and its driver the test is skipped, saying so; `.ci/run` installs them and sets
``TRIPLEGAIN_REQUIRE_CHROMIUM``, under which their absence fails the test instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.support.dagster_ui import RunningUI
from triplegain_dagster import groups

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
REQUIRE_CHROMIUM = "TRIPLEGAIN_REQUIRE_CHROMIUM"
GROUPS = (groups.MARKET_DATA, groups.HISTORY, groups.FEATURES, groups.PORTFOLIO, groups.DELIBERATION,
          groups.REPORTS, groups.BACKTESTS, groups.MARTS, groups.TRADING)
T = TypeVar("T")


def _require_chromium() -> tuple[str, str]:
    if CHROMIUM and CHROMEDRIVER:
        return CHROMIUM, CHROMEDRIVER
    reason = "headless Chromium is not installed (apt-get install chromium chromium-driver)"
    if os.environ.get(REQUIRE_CHROMIUM):
        pytest.fail(f"{reason}; {REQUIRE_CHROMIUM} is set, so it is required", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


def _wait(what: str, probe: Callable[[], T | None], timeout_s: float) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, TypeError):
            value = None
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what}: not after {timeout_s:.0f} s")


@pytest.fixture
def ui_after_demo(tmp_path: Path) -> Iterator[int]:
    """The port of `triplegain ui` serving a short demo's instance (embedded servers under tmp_path)."""
    _require_chromium()
    env = {key: value for key, value in os.environ.items()
           if key not in ("TRIPLEGAIN_DATABASE_URL", "TRIPLEGAIN_REDIS_URL", "DAGSTER_HOME", "TRIPLEGAIN_CONFIG")}
    env["TRIPLEGAIN_DATA_DIR"] = str(tmp_path)
    cli = [sys.executable, "-m", "streamer.cli.main"]
    try:
        demo = subprocess.run([*cli, "demo", "--hours", "1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        port = _free_port()
        ui = RunningUI(port, env, tmp_path)
        try:
            _wait("the UI's code location", lambda: _graphql(port, "{ assetNodes { id } }")["assetNodes"], 240)
            yield port
        finally:
            ui.stop()
    finally:
        subprocess.run([*cli, "db", "stop"], cwd=tmp_path, env=env, capture_output=True, timeout=120)


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = _require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()


def test_the_ui_shows_the_demo_and_runs_what_it_is_asked_to(ui_after_demo: int, browser) -> None:
    from selenium.webdriver.common.by import By

    base = f"http://127.0.0.1:{ui_after_demo}"

    def shown(ready: Callable[[str], bool]) -> str | None:
        text: str = browser.find_element(By.TAG_NAME, "body").text
        return text if ready(text) else None

    def page(path: str, ready: Callable[[str], bool]) -> str:
        browser.get(base + path)
        try:
            text = _wait(f"{path} in the browser", lambda: shown(ready), 120)
        except AssertionError as missing:
            body = browser.find_element(By.TAG_NAME, "body").text
            raise AssertionError(f"{missing}; the page shows:\n{body[:3000]}") from None
        for skip in browser.find_elements(By.XPATH, "//button[normalize-space(.)='Skip']"):
            skip.click()  # the community dialog the UI shows first-time visitors
        return text

    # The lineage: every asset group of the code location.
    lineage = page("/asset-groups", lambda text: "Global asset lineage" in text and "backtests" in text)
    assert all(group in lineage.splitlines() for group in GROUPS), lineage[:2000]

    # The report's equity curve, a PNG inside its materialization's markdown, renders.
    page("/assets/portfolio_report?view=events", lambda text: "equity_curve" in text and "[Show Markdown]" in text)
    browser.find_element(By.XPATH, "//*[normalize-space(text())='[Show Markdown]']").click()
    image = _wait("the equity image", lambda: next(
        (img for img in browser.find_elements(By.TAG_NAME, "img")
         if (img.get_attribute("src") or "").startswith("data:image/png;base64,")), None), 60)
    assert _wait("the image decoded", lambda: browser.execute_script("return arguments[0].naturalWidth", image), 30) > 0

    # The dbt marts the demo built, with their dbt tests as checks.
    # (The list shortens long names in the middle: "unique_trade_s…by_pair_symbol".)
    mart = page("/assets/trade_stats_by_pair?view=checks",
                lambda text: "Checks (3)" in text and "Evaluation result" in text)
    lines = mart.splitlines()
    listed = lines[lines.index("Execute all") + 1:lines.index("Execute all") + 7]
    assert [line.split("…")[0] for line in listed[::2]] == ["accepted_range", "not_null_trade", "unique_trade_s"], mart
    assert listed[1::2] == ["Succeeded"] * 3, mart[:2000]
    assert lines[lines.index("Evaluation result") + 1] == "Passed", mart[:2000]

    # A failing check shows as failed: the candles of a market long past are not fresh. (An
    # evaluation the automation launched meanwhile shows "In Progress" until it ends: read after.)
    def check_status(text: str, name: str) -> str | None:
        lines = text.splitlines()
        return lines[lines.index(name) + 1] if name in lines[:-1] else None

    judged = ("candles_1m_fresh", "candles_1m_consistent")
    checks = page("/assets/candles_1m?view=checks", lambda text: "Checks (" in text and all(
        check_status(text, name) not in (None, "In Progress") for name in judged))
    lines = checks.splitlines()
    assert lines[lines.index("candles_1m_fresh") + 1] == "Failed", checks[:2000]
    assert lines[lines.index("candles_1m_consistent") + 1] == "Succeeded"

    # A materialization launched from the UI completes.
    runs_query = "{ runsOrError(limit: 100) { ... on Runs { results { runId status assetSelection { path } } } } }"

    def regime_runs() -> list[dict]:
        runs = _graphql(ui_after_demo, runs_query)["runsOrError"]["results"]
        return [run for run in runs if {"path": ["market_regime"]} in (run["assetSelection"] or [])]

    before = {run["runId"] for run in regime_runs()}
    page("/assets/market_regime", lambda text: "Materialize" in text and "Latest materialization" in text)
    browser.find_element(By.XPATH, "//button[normalize-space(.)='Materialize']").click()
    launched = _wait("the run the button launched", lambda: [r for r in regime_runs() if r["runId"] not in before],
                     60)
    assert len(launched) == 1
    done = _wait("the launched run to finish", lambda: next(
        (r for r in regime_runs() if r["runId"] == launched[0]["runId"]
         and r["status"] in ("SUCCESS", "FAILURE", "CANCELED")), None), 420)
    assert done["status"] == "SUCCESS"
    runs_page = page(f"/runs/{done['runId']}", lambda text: "Success" in text)
    assert "market_regime" in runs_page
