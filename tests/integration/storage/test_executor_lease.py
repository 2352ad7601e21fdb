"""The executor lease on a real PostgreSQL: one holder at a time, a second one told who holds it,
freed at once when its holder is SIGKILLed or its connection is cut."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psycopg
import pytest

from tests.support.user_mistakes import REPO_ROOT
from triplegain_core.storage.executor_lease import ExecutorLease, LeaseHeld

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
