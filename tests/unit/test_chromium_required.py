"""No silent skip of the browser test in CI: without Chromium it skips, saying why, unless
``TRIPLEGAIN_REQUIRE_CHROMIUM`` is set (``.ci/run`` sets it), when it fails."""

from __future__ import annotations

import pytest

from tests.e2e import test_dagster_ui


def test_a_missing_chromium_skips_with_its_reason_or_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_dagster_ui, "CHROMIUM", None)
    monkeypatch.delenv(test_dagster_ui.REQUIRE_CHROMIUM, raising=False)
    with pytest.raises(pytest.skip.Exception, match="headless Chromium is not installed"):
        test_dagster_ui._require_chromium()
    monkeypatch.setenv(test_dagster_ui.REQUIRE_CHROMIUM, "1")
    with pytest.raises(pytest.fail.Exception, match="TRIPLEGAIN_REQUIRE_CHROMIUM is set, so it is required"):
        test_dagster_ui._require_chromium()
