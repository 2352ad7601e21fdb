"""The holes the streamer left to REST repair (:class:`MissedInterval`), kept until filled.

A hole is recorded when found, its failed repair attempts are counted with the last error, and
it is marked filled once REST brought back every trade it misses. A restarted streamer reads
the open ones and goes on repairing them; the data-quality check counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from triplegain_core.marketdata.gaps import MissedInterval
from triplegain_core.model.market import datetime_to_us, us_to_datetime

_COLUMNS = "id, symbol, from_ts, to_ts, first_trade_id, last_trade_id, reason, attempts, last_error"


@dataclass(frozen=True, slots=True)
class OpenHole:
    """A recorded hole not yet filled: its row id, the interval and the attempts so far."""

    id: int
    interval: MissedInterval
    attempts: int
    last_error: str | None


def _open_hole(row: tuple[Any, ...]) -> OpenHole:
    hole_id, symbol, from_ts, to_ts, first_id, last_id, reason, attempts, error = row
    return OpenHole(hole_id, MissedInterval(symbol, datetime_to_us(from_ts), datetime_to_us(to_ts),
                                            first_id, last_id, reason), attempts, error)


class MissedIntervalStore:
    """Reads and writes ``missed_intervals`` on an autocommit connection."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def record(self, interval: MissedInterval) -> OpenHole:
        """Record a hole (once: the same interval again returns the stored row)."""
        row = self._conn.execute(
            "INSERT INTO missed_intervals (symbol, from_ts, to_ts, first_trade_id, last_trade_id,"
            " reason) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (symbol, from_ts, to_ts) DO UPDATE SET symbol = EXCLUDED.symbol"
            f" RETURNING {_COLUMNS}",
            (interval.symbol, us_to_datetime(interval.from_us), us_to_datetime(interval.to_us),
             interval.first_trade_id, interval.last_trade_id, interval.reason),
        ).fetchone()
        assert row is not None
        return _open_hole(row)

    def open_holes(self) -> list[OpenHole]:
        """The holes not yet filled, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM missed_intervals WHERE filled_at IS NULL"
            " ORDER BY from_ts, id").fetchall()
        return [_open_hole(row) for row in rows]

    def attempt_failed(self, hole_id: int, error: str) -> None:
        """One more repair attempt that did not fill the hole, and why."""
        self._conn.execute(
            "UPDATE missed_intervals SET attempts = attempts + 1, last_error = %s WHERE id = %s",
            (error[:2000], hole_id))

    def filled(self, hole_id: int) -> None:
        """Every missing trade of the hole is stored now."""
        self._conn.execute(
            "UPDATE missed_intervals SET attempts = attempts + 1, last_error = NULL,"
            " filled_at = now() WHERE id = %s AND filled_at IS NULL", (hole_id,))
