"""``executor_controls``: the kill switch and manual control commands, who gave them and why."""

from __future__ import annotations

import logging
import threading

import psycopg
from psycopg.rows import dict_row

from triplegain_core.execution.control import ControlAction, ControlCommand

log = logging.getLogger(__name__)

_COLUMNS = ", ".join(ControlCommand.model_fields)
# The notification each recorded command sends, its id as the payload.
CONTROL_CHANNEL = "executor_controls"


class ControlStore:
    """Records control commands and reads them back in the order they were given."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def record(self, action: ControlAction, operator: str, reason: str = "", *, cancel_orders: bool = False,
               flatten: bool = False, position_id: str | None = None) -> ControlCommand:
        """Store one command and notify the executors' watches; returns it with its id and time."""
        with self._conn.transaction(), self._conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "INSERT INTO executor_controls (action, cancel_orders, flatten, position_id, operator, reason)"
                f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                (action.value, cancel_orders, flatten, position_id, operator, reason),
            ).fetchone()
            assert row is not None, "INSERT ... RETURNING returns the row"
            cur.execute("SELECT pg_notify(%s, %s)", (CONTROL_CHANNEL, str(row["control_id"])))
        return ControlCommand.model_validate(row)

    def after(self, control_id: int = 0) -> list[ControlCommand]:
        """The commands given after ``control_id`` (0: all), oldest first."""
        with self._conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM executor_controls WHERE control_id > %s ORDER BY control_id",
                (control_id,),
            ).fetchall()
        return [ControlCommand.model_validate(row) for row in rows]

    def newest_id(self) -> int:
        """The id of the newest command (0: none): one index lookup."""
        row = self._conn.execute("SELECT max(control_id) FROM executor_controls").fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    def open_position_ids(self) -> list[str]:
        """The ids of every position open in the trail, to check a ``close`` against."""
        rows = self._conn.execute("SELECT position_id FROM positions WHERE status = 'open' ORDER BY position_id")
        return [row[0] for row in rows.fetchall()]


class ControlWatch:
    """Watches for new control commands on a thread of its own, so a trading-loop cycle learns
    of one by reading :attr:`newest` (no round trip) and reads the commands only then.

    The thread LISTENs for the notification :meth:`ControlStore.record` sends with each command,
    blocked in the driver (not holding the interpreter) until one comes: the loop's cycles pay
    nothing for it. On (re)connecting it reads the newest id, so a command given while it was
    disconnected is seen too; a lost connection is logged and opened again, never fatal."""

    def __init__(self, url: str, wake_s: float = 1.0) -> None:
        self._url = url
        self._wake_s = wake_s
        self._newest = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def newest(self) -> int:
        """The newest command id seen (0: none yet)."""
        return self._newest

    def __enter__(self) -> ControlWatch:
        self._thread = threading.Thread(target=self._run, name="control-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CONTROL_CHANNEL}")
                    self._newest = max(self._newest, ControlStore(conn).newest_id())
                    while not self._stopping.is_set():
                        for notice in conn.notifies(timeout=self._wake_s):
                            self._newest = max(self._newest, int(notice.payload or 0))
            except (psycopg.Error, ValueError) as error:
                log.warning("control commands cannot be watched now (%s); trying again", error)
                self._stopping.wait(self._wake_s)
