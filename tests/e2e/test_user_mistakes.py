"""Every mistake of the corpus gets one line naming the input, no traceback, and changes nothing.

The real ``triplegain`` command runs as a subprocess, as a user runs it, on the test servers
(see ``tests/support/user_mistakes.py`` for the corpus and what "nothing changed" covers).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.user_mistakes import CORPUS, Attempt, Mistake, Servers, attempt

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def servers(pg_admin_url: str, redis_url: str) -> Servers:
    return Servers(pg_admin_url, redis_url)


def test_the_corpus_holds_at_least_fifty_mistakes() -> None:
    assert len(CORPUS) >= 50


@pytest.mark.parametrize("mistake", CORPUS, ids=lambda m: m.name)
def test_one_line_names_the_input_and_nothing_changes(mistake: Mistake, servers: Servers, tmp_path: Path) -> None:
    result: Attempt = attempt(mistake, tmp_path / "work", servers)
    assert not result.traceback, result.stderr
    assert len(result.stderr_lines) == 1, result.stderr
    (line,) = result.stderr_lines
    assert result.expected_text in line
    assert line.startswith("triplegain")
    assert result.exit_code == mistake.exit_code, line
    if mistake.hidden is not None:
        assert mistake.hidden not in result.stderr
    assert result.changes == ()
