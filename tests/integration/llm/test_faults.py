"""A fault run through the real SDKs: no bad answer ever becomes a validated decision."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.llm_standins.fault_run import fault_run

pytestmark = pytest.mark.integration


def test_three_hundred_bad_replies_end_as_recorded_rejections_or_failures(database_url: str) -> None:
    report = asyncio.run(fault_run(database_url, count=300, symbol="XRP/USDT"))

    assert report.served == 300
    assert report.traded == 0
    assert report.calls == report.rejected_calls + report.failed_calls
    # Each text answer ended one call as a rejection, stored with its reason.
    assert report.rejected_calls == report.text_answers
    assert report.stored_rejections == report.rejected_calls
    # Every reply served was one HTTP attempt of some call: nothing was lost or invented.
    assert report.http_attempts == report.served + report.overrun
