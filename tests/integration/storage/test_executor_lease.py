"""The executor lease on a real PostgreSQL: one holder at a time, a second one told who holds it,
freed at once when its holder is SIGKILLed or its connection is cut."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from tests.support.user_mistakes import REPO_ROOT
from triplegain_core.storage import executor_lease
from triplegain_core.storage.executor_lease import (
    _LOCK_CLASS,
    ExecutorLease,
    LeaseHeld,
    _application_name,
    _lock_key,
)

WAIT_S = 30.0


def _holder_pid(conn: psycopg.Connection, name: str) -> int | None:
    row = conn.execute("SELECT pid FROM executor_leases WHERE name = %s", (name,)).fetchone()
    return None if row is None else int(row[0])


def test_a_second_holder_is_told_who_holds_the_lease(database_url: str, db: psycopg.Connection) -> None:
    first = ExecutorLease(database_url, "paper")
    holder = first.acquire()
    assert (holder.host, holder.pid) == (socket.gethostname(), os.getpid())
    with pytest.raises(LeaseHeld) as refused:
        ExecutorLease(database_url, "paper").acquire()
    message = str(refused.value)
    assert "'paper'" in message and f"on {socket.gethostname()} (pid {os.getpid()}) since " in message
    with ExecutorLease(database_url, "paper:other"):  # another account set is another lease
        assert first.held()
    first.release()
    assert _holder_pid(db, "paper") is None
    with ExecutorLease(database_url, "paper") as again:
        assert again.pid == os.getpid()


def test_a_sigkilled_holder_frees_the_lease_at_once(database_url: str, db: psycopg.Connection) -> None:
    script = ("import sys, time; from triplegain_core.storage.executor_lease import ExecutorLease;"
              " lease = ExecutorLease(sys.argv[1], 'paper'); lease.acquire(); print('held', flush=True);"
              " time.sleep(600)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH"))))}
    with subprocess.Popen([sys.executable, "-c", script, database_url], stdout=subprocess.PIPE, text=True,
                          env=env) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            with pytest.raises(LeaseHeld, match=f"pid {holder.pid}"):
                ExecutorLease(database_url, "paper").acquire()
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
    lease = ExecutorLease(database_url, "paper")
    deadline = time.monotonic() + WAIT_S
    while True:  # the server notices the closed connection as soon as the socket closes
        try:
            lease.acquire()
            break
        except LeaseHeld:
            assert time.monotonic() < deadline, "the lease of a killed holder was never freed"
            time.sleep(0.05)
    assert _holder_pid(db, "paper") == os.getpid()
    lease.release()


def test_a_lease_whose_connection_is_cut_is_taken_again_unless_another_took_it(
    database_url: str, db: psycopg.Connection,
) -> None:
    lease = ExecutorLease(database_url, "paper")
    lease.acquire()
    cut = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
           " AND application_name LIKE 'triplegain execute lease%%'")
    db.execute(cut)
    assert lease.renew()  # lost with its connection, then taken again
    assert lease.held()
    db.execute(cut)
    rival = ExecutorLease(database_url, "paper")
    rival.acquire()  # took it while the first one's connection was down
    with pytest.raises(LeaseHeld):
        lease.renew()
    assert not lease.held()
    rival.release()


def _lock_as(database_url: str, host: str, pid: int) -> psycopg.Connection:
    """A connection holding the lease's lock as the executor ``pid`` on ``host`` would, before
    it has written its record."""
    conn = psycopg.connect(database_url, autocommit=True, application_name=_application_name(host, pid))
    assert conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_LOCK_CLASS, _lock_key("paper"))).fetchone() == (True,)
    return conn


def _record(db: psycopg.Connection, host: str, pid: int) -> None:
    db.execute("INSERT INTO executor_leases (name, host, pid, since) VALUES ('paper', %s, %s, now())"
               " ON CONFLICT (name) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, since = EXCLUDED.since",
               (host, pid))


def test_a_holder_is_named_from_its_own_record_not_a_killed_holders(database_url: str,
                                                                    db: psycopg.Connection) -> None:
    """Two executors started at once: the second asks who holds the lock between the first's
    lock and its record, over the record a killed holder left. It waits for the holder's own."""
    _record(db, "elsewhere", 1111)  # left by a holder killed earlier
    holder = _lock_as(database_url, "elsewhere", 4242)
    writer = threading.Timer(0.3, _record, (psycopg.connect(database_url, autocommit=True), "elsewhere", 4242))
    writer.start()
    try:
        with pytest.raises(LeaseHeld, match=r"by the executor on elsewhere \(pid 4242\) since "):
            ExecutorLease(database_url, "paper").acquire()
    finally:
        writer.join()
        holder.close()


def test_a_holder_that_never_says_who_it_is_is_a_starting_executor(
        database_url: str, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_lease, "HOLDER_WAIT_S", 0.2)
    holder = _lock_as(database_url, "elsewhere", 4242)
    try:
        with pytest.raises(LeaseHeld, match=r"already traded by another executor \(starting now\)"):
            ExecutorLease(database_url, "paper").acquire()
    finally:
        holder.close()


def test_a_lock_freed_while_its_holder_is_asked_for_is_taken(database_url: str, db: psycopg.Connection) -> None:
    holder = _lock_as(database_url, "elsewhere", 4242)
    threading.Timer(0.3, holder.close).start()  # killed before it wrote its record
    with ExecutorLease(database_url, "paper") as lease:
        assert lease.pid == os.getpid()
    assert _holder_pid(db, "paper") is None
