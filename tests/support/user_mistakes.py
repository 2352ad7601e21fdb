"""The corpus of a user's mistakes, and how to try one on the real ``triplegain`` command.

Each :class:`Mistake` is a command line (and the files, environment and servers around it) that
a user could get wrong. :func:`attempt` runs it as a subprocess in a fresh working directory and
records what a user would see and what changed. The end-to-end test asserts every answer is one
line naming the input, with no traceback and nothing written; the benchmark counts them.

Placeholders in ``argv`` and ``env`` values: ``{database}`` a fresh migrated database,
``{empty_database}`` a fresh database without the schema, ``{missing_database}`` a database the
server does not have, ``{redis}`` the test Redis database (flushed), ``{busy_port}`` a port a
socket listens on for the run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from triplegain_core.storage.embedded import drop_database, ensure_database, stop_embedded
from triplegain_core.storage.migrate import migrate

REPO_ROOT = Path(__file__).resolve().parents[2]

# Nothing answers on port 1: every command that reaches a server it should not fails there.
UNREACHABLE_DATABASE = "postgresql://u:secret@127.0.0.1:1/x"
UNREACHABLE_REDIS = "redis://:hunter2@127.0.0.1:1/0"
# Seconds a mistake may take to be answered; past it the command is taken as having gone ahead.
ANSWER_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Mistake:
    """One mistake: the command line, what surrounds it, and the answer expected."""

    name: str
    argv: tuple[str, ...]
    # Text the one line must contain: the input it names (after the placeholders are filled).
    names: str
    exit_code: int = 2
    env: Mapping[str, str] = field(default_factory=dict)
    # Files (path relative to the working directory -> text) present before the command runs.
    files: Mapping[str, str] = field(default_factory=dict)
    # Text the answer must never show (a password).
    hidden: str | None = None


@dataclass(frozen=True, slots=True)
class Servers:
    """The test servers: the PostgreSQL maintenance database and a Redis database for tests."""

    pg_admin_url: str
    redis_url: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the user saw, and what the command changed."""

    mistake: Mistake
    exit_code: int
    stderr: str
    expected_text: str
    changes: tuple[str, ...]

    @property
    def stderr_lines(self) -> list[str]:
        """The lines written on stderr."""
        return self.stderr.splitlines()

    @property
    def traceback(self) -> bool:
        """Whether a Python traceback reached the user."""
        return "Traceback" in self.stderr


def _toml(text: str) -> dict[str, str]:
    return {"triplegain.toml": text}


_TRADES_CSV = "ts_s,price,amount\n1700000000,0.61,10\n1700000001,0.62,5\n"

CORPUS: tuple[Mistake, ...] = (
    # The command line itself.
    Mistake("unknown command", ("frobnicate",), "frobnicate"),
    Mistake("unknown db action", ("db", "frob"), "frob"),
    Mistake("db without action", ("db",), "ACTION"),
    Mistake("unknown top-level flag", ("--bogus", "db", "migrate"), "--bogus"),
    Mistake("unknown command flag", ("db", "migrate", "--force"), "--force"),
    Mistake("approve without id", ("decision", "approve"), "decision_id"),
    Mistake("approve without --by", ("decision", "approve", "d1"), "--by"),
    Mistake("reject without --reason", ("decision", "reject", "d1", "--by", "x"), "--reason"),
    Mistake("execute with a stray argument", ("execute", "--from-start", "yes"), "yes"),
    Mistake("stream option without value", ("stream", "--ws-url"), "--ws-url"),
    Mistake("no command", (), "COMMAND"),
    Mistake("decision without action", ("decision",), "ACTION"),
    Mistake("stream to a WebSocket URL of another scheme", ("stream", "--ws-url", "http://127.0.0.1:8765"),
            "http://127.0.0.1:8765"),
    Mistake("stream with a REST URL without host", ("stream", "--rest-url", "https://"), "--rest-url"),
    Mistake("flag given a value", ("demo", "--no-dagster=1"), "--no-dagster"),
    # Numbers in options.
    Mistake("port above 65535", ("replay", "--port", "99999"), "99999"),
    Mistake("negative port", ("replay", "--port", "-1"), "-1"),
    Mistake("port not a number", ("replay", "--port", "abc"), "abc"),
    Mistake("REST port above 65535", ("replay", "--rest-port", "70000"), "70000"),
    Mistake("negative hours", ("replay", "--hours", "-2"), "--hours"),
    Mistake("zero hours", ("demo", "--hours", "0"), "--hours"),
    Mistake("NaN hours", ("demo", "--hours", "NaN"), "NaN"),
    Mistake("negative speed", ("replay", "--speed=-0.5"), "--speed"),
    Mistake("infinite speed", ("demo", "--speed", "inf"), "inf"),
    Mistake("negative seed", ("demo", "--seed", "-5"), "--seed"),
    Mistake("fractional seed", ("replay", "--seed", "1.5"), "1.5"),
    Mistake("deliberate every 0 minutes", ("demo", "--deliberate-every", "0"), "--deliberate-every"),
    Mistake("deliberate every negative minutes", ("demo", "--deliberate-every", "-60"), "-60"),
    # Ports and hosts.
    Mistake("port in use", ("replay", "--port", "{busy_port}"), "{busy_port}"),
    Mistake("REST port in use", ("replay", "--port", "0", "--rest-port", "{busy_port}"), "--rest-port"),
    Mistake("REST port is the WebSocket port", ("replay", "--port", "{busy_port}", "--rest-port", "{busy_port}"),
            "--rest-port"),
    Mistake("host not of this machine", ("replay", "--host", "192.0.2.1", "--port", "0"), "192.0.2.1"),
    # The configuration.
    Mistake("missing --config file", ("--config", "missing.toml", "db", "migrate"), "missing.toml"),
    Mistake("missing TRIPLEGAIN_CONFIG file", ("db", "migrate"), "absent.toml",
            env={"TRIPLEGAIN_CONFIG": "absent.toml"}),
    Mistake("broken TOML", ("db", "migrate"), "triplegain.toml", files=_toml("account = \n")),
    Mistake("value out of range", ("db", "migrate"), "max_drawdown", files=_toml("[risk]\nmax_drawdown = 7\n")),
    Mistake("misspelt key", ("db", "migrate"), "acount", files=_toml('acount = "paper"\n')),
    Mistake("misspelt section key", ("execute",), "risk_per_trad", files=_toml("[risk]\nrisk_per_trad = 0.1\n")),
    Mistake("value of the wrong type", ("db", "migrate"), "starting_balances",
            files=_toml('starting_balances = "lots"\n')),
    Mistake("negative starting balance", ("execute",), "starting balances",
            files=_toml("starting_balances = { USDT = -5.0 }\n")),
    Mistake("unknown symbol in the configuration", ("db", "migrate"), "DOGE/USDT",
            files=_toml('symbols = ["DOGE/USDT"]\n')),
    Mistake("live mode without the opt-in", ("execute",), "TRIPLEGAIN_I_ACCEPT_LIVE_TRADING",
            env={"TRIPLEGAIN_MODE": "live"}),
    Mistake("live execution", ("execute",), "TRIPLEGAIN_MODE",
            env={"TRIPLEGAIN_MODE": "live", "TRIPLEGAIN_I_ACCEPT_LIVE_TRADING": "yes"}),
    Mistake("unknown mode", ("execute",), "mode", env={"TRIPLEGAIN_MODE": "wild"}),
    Mistake("misspelt strategy disabled", ("db", "migrate"), "market_makng",
            files=_toml('[strategies]\ndisabled = ["market_makng"]\n')),
    Mistake("unknown tested strategy", ("db", "migrate"), "trend_momentm",
            files=_toml('[strategies]\ntested = ["trend_momentm"]\n')),
    Mistake("unknown gated strategy", ("db", "migrate"), "no_such_strategy",
            files=_toml('[strategies]\ngated = ["no_such_strategy"]\n')),
    Mistake("unknown model in the fallback chain", ("db", "migrate"), "claud",
            files=_toml('[llm]\nfallback_chain = ["claud"]\n')),
    # The data directory (the embedded servers live there).
    Mistake("unwritable data directory", ("db", "migrate"), "/sys/kernel",
            env={"TRIPLEGAIN_DATA_DIR": "/sys/kernel", "TRIPLEGAIN_DATABASE_URL": ""}),
    Mistake("data directory is a file", ("decision", "list"), "afile",
            env={"TRIPLEGAIN_DATA_DIR": "afile", "TRIPLEGAIN_DATABASE_URL": ""}, files={"afile": "x"}),
    Mistake("data directory under a file", ("stream",), "afile/sub",
            env={"TRIPLEGAIN_DATA_DIR": "afile/sub", "TRIPLEGAIN_DATABASE_URL": ""}, files={"afile": "x"}),
    Mistake("demo on an unwritable data directory", ("demo", "--no-dagster"), "/sys/kernel",
            env={"TRIPLEGAIN_DATA_DIR": "/sys/kernel"}),
    Mistake("embedded Redis on an unwritable data directory", ("execute",), "/sys/kernel",
            env={"TRIPLEGAIN_DATA_DIR": "/sys/kernel", "TRIPLEGAIN_DATABASE_URL": "{empty_database}",
                 "TRIPLEGAIN_REDIS_URL": ""}),
    # Servers that do not answer, databases without the schema.
    Mistake("migrate on an unreachable database", ("db", "migrate"), "postgresql://u:***@127.0.0.1:1/x",
            hidden="secret"),
    Mistake("decision list on an unreachable database", ("decision", "list"), "127.0.0.1:1", hidden="secret"),
    Mistake("stream on an unreachable database", ("stream",), "127.0.0.1:1", hidden="secret"),
    Mistake("execute on an unreachable database", ("execute",), "127.0.0.1:1", hidden="secret"),
    Mistake("database URL that is no URL", ("db", "migrate"), "not-a-url",
            env={"TRIPLEGAIN_DATABASE_URL": "not-a-url"}),
    Mistake("database the server does not have", ("db", "migrate"), "tg_no_such_database",
            env={"TRIPLEGAIN_DATABASE_URL": "{missing_database}"}),
    Mistake("execute on an unreachable Redis", ("execute",), "redis://:***@127.0.0.1:1/0", hidden="hunter2",
            env={"TRIPLEGAIN_DATABASE_URL": "{empty_database}"}),
    Mistake("stream on an unreachable Redis", ("stream",), "redis://:***@127.0.0.1:1/0", hidden="hunter2",
            env={"TRIPLEGAIN_DATABASE_URL": "{empty_database}"}),
    Mistake("Redis URL of another scheme", ("execute",), "http://127.0.0.1:6379",
            env={"TRIPLEGAIN_DATABASE_URL": "{empty_database}", "TRIPLEGAIN_REDIS_URL": "http://127.0.0.1:6379"}),
    Mistake("decision list on an unmigrated database", ("decision", "list"), "triplegain db migrate",
            env={"TRIPLEGAIN_DATABASE_URL": "{empty_database}"}),
    Mistake("approve on an unmigrated database", ("decision", "approve", "d1", "--by", "x"), "triplegain db migrate",
            env={"TRIPLEGAIN_DATABASE_URL": "{empty_database}", "TRIPLEGAIN_REDIS_URL": "{redis}"}),
    Mistake("reject on an unmigrated database", ("decision", "reject", "d1", "--by", "x", "--reason", "r"),
            "triplegain db migrate", env={"TRIPLEGAIN_DATABASE_URL": "{empty_database}"}),
    Mistake("approve an unknown decision", ("decision", "approve", "no-such-id", "--by", "x"), "no-such-id",
            env={"TRIPLEGAIN_DATABASE_URL": "{database}", "TRIPLEGAIN_REDIS_URL": "{redis}"}),
    Mistake("reject an unknown decision", ("decision", "reject", "no-such-id", "--by", "x", "--reason", "r"),
            "no-such-id", env={"TRIPLEGAIN_DATABASE_URL": "{database}"}),
    Mistake("approve with Redis unreachable", ("decision", "approve", "d1", "--by", "x"), "127.0.0.1:1",
            hidden="hunter2", env={"TRIPLEGAIN_DATABASE_URL": "{database}"}),
    # Replay sources.
    Mistake("missing source file", ("demo", "--no-dagster", "--source", "missing.parquet"), "missing.parquet"),
    Mistake("missing source for the replay exchange", ("replay", "--port", "0", "--source", "missing.csv"),
            "missing.csv"),
    Mistake("a price that is not a number", ("demo", "--no-dagster", "--source", "trades.csv"), "trades.csv",
            files={"trades.csv": "ts_s,price,amount\n1,abc,2\n"}),
    Mistake("empty source file", ("demo", "--no-dagster", "--source", "empty.csv"), "empty.csv",
            files={"empty.csv": ""}),
    Mistake("source with a header only", ("demo", "--no-dagster", "--source", "header.csv"), "header.csv",
            files={"header.csv": "ts_s,price,amount\n"}),
    Mistake("source with the wrong columns", ("demo", "--no-dagster", "--source", "columns.csv"), "columns.csv",
            files={"columns.csv": "time,px,qty\n1,0.6,2\n"}),
    Mistake("NaN price", ("demo", "--no-dagster", "--source", "nan.csv"), "nan.csv",
            files={"nan.csv": "ts_s,price,amount\n1,nan,2\n"}),
    Mistake("negative amount", ("demo", "--no-dagster", "--source", "negative.csv"), "negative.csv",
            files={"negative.csv": "ts_s,price,amount\n1,0.6,-2\n"}),
    Mistake("parquet that is not parquet", ("demo", "--no-dagster", "--source", "fake.parquet"), "fake.parquet",
            files={"fake.parquet": _TRADES_CSV}),
    Mistake("source of an unknown format", ("demo", "--no-dagster", "--source", "trades.txt"), "trades.txt",
            files={"trades.txt": _TRADES_CSV}),
    Mistake("unknown symbol for a source", ("demo", "--no-dagster", "--source", "good.csv", "--symbol", "DOGE/USDT"),
            "DOGE/USDT", files={"good.csv": _TRADES_CSV}),
)


def attempt(mistake: Mistake, workdir: Path, servers: Servers) -> Attempt:
    """Run ``mistake`` as a user would, in ``workdir``, and record the answer and any change."""
    workdir.mkdir(parents=True, exist_ok=True)
    for relative, text in mistake.files.items():
        (workdir / relative).write_text(text)
    with ExitStack() as stack:
        values = {"busy_port": str(stack.enter_context(_listening_port()))}
        databases: dict[str, str] = {}
        for placeholder, migrated in (("database", True), ("empty_database", False)):
            if _uses(mistake, placeholder):
                databases[placeholder] = stack.enter_context(_fresh_database(servers.pg_admin_url, migrated))
        values.update(databases)
        values["missing_database"] = _with_dbname(servers.pg_admin_url, "tg_no_such_database")
        values["redis"] = servers.redis_url
        if _uses(mistake, "redis"):
            redis.Redis.from_url(servers.redis_url).flushdb()
        before = _state(workdir, databases.values(), servers.redis_url if _uses(mistake, "redis") else None)
        argv = [arg.format(**values) for arg in mistake.argv]
        exit_code, stderr = _run(argv, workdir, _environment(mistake, workdir, values))
        after = _state(workdir, databases.values(), servers.redis_url if _uses(mistake, "redis") else None)
    # A command that went ahead may have started the embedded servers: they must not outlive it.
    stop_embedded(workdir / "data")
    changes = tuple(f"{key}: {before.get(key)} -> {after.get(key)}"
                    for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key))
    return Attempt(mistake, exit_code, stderr, mistake.names.format(**values), changes)


def _run(argv: list[str], workdir: Path, env: Mapping[str, str]) -> tuple[int, str]:
    """The command's exit code and stderr; a command still running after the timeout is killed."""
    with subprocess.Popen([sys.executable, "-m", "streamer.cli.main", *argv], cwd=workdir, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            _, stderr = process.communicate(timeout=ANSWER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
            return -1, stderr + f"\n(still running after {ANSWER_TIMEOUT_S:.0f} s: killed)"
    return process.returncode, stderr


def _uses(mistake: Mistake, placeholder: str) -> bool:
    texts = (*mistake.argv, *mistake.env.values())
    return any("{" + placeholder + "}" in text for text in texts)


def _environment(mistake: Mistake, workdir: Path, values: Mapping[str, str]) -> dict[str, str]:
    # Nothing of the caller's TripleGain setup leaks in; by default every server is unreachable
    # and the data directory is a folder of the working directory that does not exist yet.
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIPLEGAIN_")}
    env.update({
        "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH")))),
        "TRIPLEGAIN_DATA_DIR": str(workdir / "data"),
        "TRIPLEGAIN_DATABASE_URL": UNREACHABLE_DATABASE,
        "TRIPLEGAIN_REDIS_URL": UNREACHABLE_REDIS,
    })
    env.update({key: value.format(**values) for key, value in mistake.env.items()})
    return env


def _state(workdir: Path, database_urls: Iterable[str], redis_url: str | None) -> dict[str, str]:
    """Every file of the working directory, every table of the databases, the Redis keys."""
    state = {f"file {path.relative_to(workdir)}": f"{path.stat().st_size} bytes, mtime {path.stat().st_mtime_ns}"
             for path in sorted(workdir.rglob("*")) if path.is_file()}
    state.update({f"dir {path.relative_to(workdir)}": "present" for path in workdir.rglob("*") if path.is_dir()})
    for url in database_urls:
        with psycopg.connect(url, autocommit=True) as conn:
            tables = [row[0] for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
            for table in tables:
                count = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
                state[f"table {table} of {url}"] = f"{count[0] if count else 0} rows"
    if redis_url is not None:
        client = redis.Redis.from_url(redis_url)
        state["redis keys"] = ", ".join(sorted(key.decode() for key in client.keys("*")))
        client.close()
    return state


@contextmanager
def _listening_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@contextmanager
def _fresh_database(pg_admin_url: str, migrated: bool) -> Iterator[str]:
    name = f"tg_mistake_{uuid.uuid4().hex[:12]}"
    ensure_database(pg_admin_url, name)
    url = _with_dbname(pg_admin_url, name)
    try:
        if migrated:
            migrate(url)
        yield url
    finally:
        drop_database(pg_admin_url, name)


def _with_dbname(url: str, name: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = name
    return make_conninfo("", **params)
