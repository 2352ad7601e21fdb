"""Manual control of the executors: the kill switch, resume, and closing a position by hand.

A person gives a :class:`ControlCommand` (``triplegain halt [--cancel] [--flatten]``,
``triplegain resume``, ``triplegain close POSITION``); it is recorded with who gave it and why,
and every executor applies it once, in the order given, within one cycle:

- ``halt`` refuses every new entry of every account (an entry block, see
  :mod:`~triplegain_core.risk.entry_blocks`: each entry is a recorded rejected risk check)
  while exits go on; ``cancel`` also cancels the working orders, ``flatten`` closes every
  open position through the normal exit path;
- ``resume`` lifts the halt;
- ``close`` closes the one position named.

Whether trading is halted is the newest halt or resume (:func:`halted_by`), so a restarted
executor comes back halted when it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ControlAction(StrEnum):
    """What a person asked of the executors."""

    HALT = "halt"
    RESUME = "resume"
    CLOSE = "close"


class ControlCommand(BaseModel):
    """One recorded command: its id (the order commands are applied in), the action and its
    options, who gave it, why, and when (wall-clock time)."""

    model_config = ConfigDict(frozen=True)

    control_id: int
    action: ControlAction
    cancel_orders: bool = False
    flatten: bool = False
    position_id: str | None = None
    operator: str
    reason: str = ""
    created_at: datetime

    def describe(self) -> str:
        """One line for the log and the entry block: what, by whom, why."""
        options = [name for name, on in (("cancel", self.cancel_orders), ("flatten", self.flatten)) if on]
        what = self.action.value + (f" {self.position_id}" if self.position_id else "")
        what += f" ({', '.join(options)})" if options else ""
        return f"{what} by {self.operator}" + (f": {self.reason}" if self.reason else "")


def halted_by(commands: Iterable[ControlCommand]) -> ControlCommand | None:
    """The halt in force after ``commands`` (in id order): the newest halt not followed by a
    resume, or None."""
    halt = None
    for command in commands:
        if command.action is ControlAction.HALT:
            halt = command
        elif command.action is ControlAction.RESUME:
            halt = None
    return halt
