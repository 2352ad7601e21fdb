"""The command's answers: a user's mistake is one line, anything unexpected one line unless -v."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from streamer.cli import db, main, options
from triplegain_core.config import Settings
from triplegain_core.errors import UserMistake


def _raising(error: Exception) -> Callable[[argparse.Namespace, Settings], int]:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        raise error
    return handler


def test_a_user_mistake_is_its_own_one_line_answer(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(db, "_db_stop", _raising(UserMistake("the thing X is wrong: do Y")))
    assert main.main(["db", "stop"]) == 2
    assert capsys.readouterr().err == "triplegain: the thing X is wrong: do Y\n"


def test_an_unexpected_error_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(db, "_db_stop", _raising(RuntimeError("boom\nsecond line")))
    assert main.main(["db", "stop"]) == 1
    err = capsys.readouterr().err
    assert err == "triplegain: unexpected RuntimeError: boom; second line (run with -v for the traceback)\n"


def test_verbose_shows_the_unexpected_error_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "_db_stop", _raising(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        main.main(["-v", "db", "stop"])


def test_a_usage_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main.main(["replay", "--port", "99999"])
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == ("triplegain replay: argument --port: port 99999 is out of range: a port is 0 to 65535"
                    " (see triplegain replay --help)")


@pytest.mark.parametrize(("kind", "text"), [
    (options.port, "65536"), (options.port, "-1"), (options.port, "8.5"),
    (options.non_negative_int, "-1"), (options.positive_int, "0"),
    (options.non_negative_float, "-0.1"), (options.non_negative_float, "nan"),
    (options.positive_float, "0"), (options.positive_float, "inf"), (options.positive_float, "-inf"),
    (options.positive_float, "six"),
])
def test_option_types_refuse_bad_numbers(kind: Callable[[str], float], text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=text.lstrip("-")):
        kind(text)


@pytest.mark.parametrize(("kind", "text", "value"), [
    (options.port, "0", 0), (options.port, "65535", 65535), (options.non_negative_int, "0", 0),
    (options.positive_int, "60", 60), (options.non_negative_float, "0", 0.0), (options.positive_float, "0.5", 0.5),
])
def test_option_types_take_good_numbers(kind: Callable[[str], float], text: str, value: float) -> None:
    assert kind(text) == value
