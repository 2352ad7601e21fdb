"""BENCH bad_inputs_tried / bad_inputs_with_traceback: the corpus of a user's mistakes, tried.

Every mistake of ``tests/support/user_mistakes.py`` (those awaiting another branch of issue 14
left out until it is merged) runs through the real ``triplegain`` command on the test servers;
how many answered with a Python traceback must be 0. The other figures say how many answers
broke the rest of the standard: not one line, not naming the input, a wrong exit code, or a
change left behind.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.user_mistakes import CORPUS, Servers, attempt


def test_bad_inputs(pg_admin_url: str, redis_url: str, tmp_path: Path) -> None:
    servers = Servers(pg_admin_url, redis_url)
    attempts = [attempt(mistake, tmp_path / f"mistake_{index}", servers)
                for index, mistake in enumerate(CORPUS)]
    with_traceback = [a.mistake.name for a in attempts if a.traceback]
    not_one_line = [a.mistake.name for a in attempts if len(a.stderr_lines) != 1]
    unnamed = [a.mistake.name for a in attempts if a.expected_text not in a.stderr]
    wrong_code = [a.mistake.name for a in attempts if a.exit_code != a.mistake.exit_code]
    changed = [a.mistake.name for a in attempts if a.changes]
    for label, names in (("traceback", with_traceback), ("not one line", not_one_line),
                         ("input not named", unnamed), ("wrong exit code", wrong_code), ("changed", changed)):
        if names:
            print(f"\n{label}: {', '.join(names)}")
    print(f"\nBENCH bad_inputs_tried {len(attempts)} inputs")
    print(f"BENCH bad_inputs_with_traceback {len(with_traceback)} inputs")
    print(f"BENCH bad_inputs_not_one_line {len(not_one_line)} inputs")
    print(f"BENCH bad_inputs_changed_something {len(changed)} inputs")
    assert len(attempts) >= 50
    assert with_traceback == []
