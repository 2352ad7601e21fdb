"""The executor lease: only one executor runs an account set at a time.

The lease is a PostgreSQL advisory lock held by a connection of its own for as long as the
executor runs. The server frees it the moment that connection ends, however the executor ended
(a SIGKILL included), so a dead holder never blocks the next one. The holder writes who it is
(host, pid, since when) into ``executor_leases``, which a second executor reads to say who holds
the lease before it exits. That record is written just after the lock is taken, and a killed
holder's record stays: the second executor names the holder only once the record is the one of
the connection holding the lock (its application name says who it is), waiting a moment for it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

import psycopg

from triplegain_core.errors import UserMistake

log = logging.getLogger(__name__)

# The advisory lock's first key, constant: it sets the executor leases apart from other locks.
_LOCK_CLASS = 0x7467
# How long a second executor waits for the holder's record (written just after its lock), and
# how often it looks.
HOLDER_WAIT_S = 5.0
HOLDER_POLL_S = 0.05


class LeaseHeld(UserMistake):
    """Another executor holds the lease of this account set."""


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """Who holds (or last held) a lease."""

    name: str
    host: str
    pid: int
    since: datetime


def _lock_key(name: str) -> int:
    """The advisory lock's second key for lease ``name`` (a signed 32-bit integer)."""
    return zlib.crc32(name.encode()) - (1 << 31)


class ExecutorLease:
    """The lease of the account set ``name`` on the database at ``db_url``.

    :meth:`acquire` takes it or raises :class:`LeaseHeld` naming the holder; :meth:`held`
    says whether it is still held (False once its connection is lost: the server freed it);
    :meth:`release` gives it back. Use it as a context manager to hold it for a block.
    """

    def __init__(self, db_url: str, name: str) -> None:
        self._db_url = db_url
        self.name = name
        self._conn: psycopg.Connection | None = None

    def __enter__(self) -> LeaseHolder:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> LeaseHolder:
        """Take the lease; raises :class:`LeaseHeld` (a one-line answer) when another executor has it."""
        if self._conn is not None:
            raise RuntimeError(f"the lease {self.name!r} is already held here")
        holder_name = f"{socket.gethostname()} pid {os.getpid()}"
        conn = psycopg.connect(self._db_url, autocommit=True,
                               application_name=_application_name(socket.gethostname(), os.getpid()))
        try:
            while not self._try_lock(conn):
                held_by = self._held_by(conn)
                if held_by is not None:
                    raise LeaseHeld(held_by)
            found = conn.execute(
                "INSERT INTO executor_leases (name, host, pid, since) VALUES (%s, %s, %s, now())"
                " ON CONFLICT (name) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, since = EXCLUDED.since"
                " RETURNING since", (self.name, socket.gethostname(), os.getpid())).fetchone()
        except BaseException:
            conn.close()
            raise
        assert found is not None
        self._conn = conn
        log.info("executor lease %r taken by %s", self.name, holder_name)
        return LeaseHolder(self.name, socket.gethostname(), os.getpid(), found[0])

    def held(self) -> bool:
        """Whether the lease is still held: its connection answers (a lost connection freed it)."""
        if self._conn is None or self._conn.closed:
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            log.error("executor lease %r lost with its connection", self.name)
            self._conn.close()
            self._conn = None
            return False
        return True

    def renew(self) -> bool:
        """Keep the lease: True when held (still, or taken again after its connection was lost),
        False while the database cannot be reached; raises :class:`LeaseHeld` when another
        executor took it meanwhile."""
        if self.held():
            return True
        try:
            self.acquire()
        except psycopg.OperationalError as exc:
            log.warning("executor lease %r cannot be taken again yet: %s", self.name, str(exc).strip()[:200])
            return False
        return True

    def release(self) -> None:
        """Give the lease back (closing its connection frees the lock)."""
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        try:
            conn.execute("DELETE FROM executor_leases WHERE name = %s AND host = %s AND pid = %s",
                         (self.name, socket.gethostname(), os.getpid()))
        except psycopg.Error:
            log.warning("executor lease %r: its record could not be cleared", self.name)
        finally:
            conn.close()

    def _try_lock(self, conn: psycopg.Connection) -> bool:
        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_LOCK_CLASS, _lock_key(self.name))).fetchone()
        return row is not None and bool(row[0])

    def _held_by(self, conn: psycopg.Connection) -> str | None:
        """Who holds the lease, in a sentence; None when nobody holds it any more (try again)."""
        deadline = time.monotonic() + HOLDER_WAIT_S
        while True:
            holder = conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.classid = %s::bigint::oid"
                " AND l.objid = (%s::bigint & 4294967295)::oid AND l.objsubid = 2 AND l.granted",
                (_LOCK_CLASS, _lock_key(self.name))).fetchone()
            if holder is None:
                return None
            row = conn.execute("SELECT host, pid, since FROM executor_leases WHERE name = %s",
                               (self.name,)).fetchone()
            if row is not None and holder[0] == _application_name(row[0], row[1]):
                host, pid, since = row
                who = f"the executor on {host} (pid {pid}) since {since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
                break
            if time.monotonic() >= deadline:  # the holder has not written who it is yet
                who = "another executor (starting now)"
                break
            time.sleep(HOLDER_POLL_S)
        return (f"account set {self.name!r} is already traded by {who}: stop that executor first,"
                " or give this one another TRIPLEGAIN_ACCOUNT")


def _application_name(host: str, pid: int) -> str:
    """The name of a lease's connection: who holds it (PostgreSQL keeps 63 characters)."""
    return f"triplegain execute lease ({host} pid {pid})"[:63]
