"""Server URLs are shown without their passwords; a data directory that cannot be written is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from triplegain_core.config import Settings
from triplegain_core.storage import endpoints
from triplegain_core.storage.endpoints import DataDirUnwritable, masked_url, writable_data_dir


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:secret@127.0.0.1:1/x", "postgresql://u:***@127.0.0.1:1/x"),
    ("redis://:secret@cache:6379/0", "redis://:***@cache:6379/0"),
    ("postgresql://db.example/triplegain?password=secret&sslmode=require",
     "postgresql://db.example/triplegain?password=***&sslmode=require"),
    ("host=127.0.0.1 user=u password=secret dbname=x", "host=127.0.0.1 user=u password=*** dbname=x"),
    ("postgresql://trader@db.example/triplegain", "postgresql://trader@db.example/triplegain"),
    ("unix:///tmp/redis.sock", "unix:///tmp/redis.sock"),
])
def test_masked_url_hides_the_password_only(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_a_data_directory_is_created_when_writable(tmp_path: Path) -> None:
    assert writable_data_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []


def test_a_data_directory_under_a_file_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataDirUnwritable) as caught:
        writable_data_dir(tmp_path / "afile" / "sub")
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path / "afile" / "sub") in message
    assert "TRIPLEGAIN_DATA_DIR" in message


def test_a_configured_server_is_checked_once_per_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    checked: list[str] = []
    monkeypatch.setattr(endpoints, "check_database", lambda url, data_dir: checked.append(url))
    monkeypatch.setattr(endpoints, "_answered", set())
    settings = Settings(database_url="postgresql://u@127.0.0.1:1/x", data_dir=tmp_path)
    assert [endpoints.database_url(settings) for _ in range(3)] == [settings.database_url] * 3
    assert checked == [settings.database_url]


def test_a_server_that_did_not_answer_is_checked_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(endpoints, "_answered", set())
    settings = Settings(redis_url="redis://127.0.0.1:1/0", data_dir=tmp_path)
    for _ in range(2):
        with pytest.raises(endpoints.ServerUnreachable):
            endpoints.redis_url(settings)
    assert endpoints._answered == set()
