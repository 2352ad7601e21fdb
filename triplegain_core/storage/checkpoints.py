"""``executor_checkpoints`` and ``executor_loop_checkpoints``: what a restarted executor comes back to.

Each cycle of the trading loop that changed something saves the accounts it changed (one
jsonb row each, an :class:`~triplegain_core.execution.account.AccountState`) and the loop's
row (the stream ids processed up to, the newest control command applied) inside the cycle's
transaction (:class:`~triplegain_core.storage.trading_store.CycleTransaction`), so the
checkpoint always describes exactly the audit trail stored with it.
"""

from __future__ import annotations

import psycopg
from pydantic import BaseModel, ConfigDict

from triplegain_core.execution.account import AccountState
from triplegain_core.execution.kernel import KernelState
from triplegain_core.storage.trading_store import CycleTransaction

_ACCOUNT_UPSERT = (
    "INSERT INTO executor_checkpoints (account, executor, state, saved_at) VALUES (%s, %s, %s::jsonb, now())"
    " ON CONFLICT (account) DO UPDATE SET executor = EXCLUDED.executor, state = EXCLUDED.state,"
    " saved_at = EXCLUDED.saved_at"
)
_LOOP_UPSERT = (
    "INSERT INTO executor_loop_checkpoints (executor, candles_id, trades_id, control_id, kernel_state,"
    " saved_at) VALUES (%s, %s, %s, %s, %s::jsonb, now()) ON CONFLICT (executor) DO UPDATE SET"
    " candles_id = EXCLUDED.candles_id, trades_id = EXCLUDED.trades_id, control_id = EXCLUDED.control_id,"
    " kernel_state = EXCLUDED.kernel_state, saved_at = EXCLUDED.saved_at"
)


class LoopProgress(BaseModel):
    """Where a trading loop is: the closed-candle and trade stream ids it has processed up to
    and the newest control command it has applied."""

    model_config = ConfigDict(frozen=True)

    candles_id: str
    trades_id: str | None = None
    control_id: int = 0


class ExecutorCheckpoint(BaseModel):
    """An executor's whole checkpoint: the loop's progress and its kernel's accounts."""

    model_config = ConfigDict(frozen=True)

    progress: LoopProgress
    kernel: KernelState


class CheckpointStore:
    """Saves and loads the checkpoints of the executor of one base account (``executor``)."""

    def __init__(self, conn: psycopg.Connection, executor: str, transactions: CycleTransaction) -> None:
        self._conn = conn
        self._executor = executor
        self.transactions = transactions
        """The cycle transaction the checkpoint is saved in (that of the audit trail's store)."""

    def save(self, progress: LoopProgress, kernel: KernelState) -> None:
        """Upsert the accounts of ``kernel`` and the loop's row, in the cycle's transaction."""
        self.transactions.begin()
        with self._conn.cursor() as cur:
            if kernel.accounts:
                # Serialized by pydantic's own JSON encoder: a third of the time of a dict through json.
                cur.executemany(_ACCOUNT_UPSERT, [(account.name, self._executor, account.model_dump_json())
                                                  for account in kernel.accounts])
            cur.execute(_LOOP_UPSERT, (self._executor, progress.candles_id, progress.trades_id, progress.control_id,
                                       kernel.model_dump_json(exclude={"accounts"})))

    def load(self) -> ExecutorCheckpoint | None:
        """The executor's checkpoint, or None when it has never saved one (a fresh start)."""
        row = self._conn.execute(
            "SELECT candles_id, trades_id, control_id, kernel_state FROM executor_loop_checkpoints"
            " WHERE executor = %s", (self._executor,),
        ).fetchone()
        if row is None:
            return None
        candles_id, trades_id, control_id, kernel_state = row
        states = self._conn.execute(
            "SELECT state FROM executor_checkpoints WHERE executor = %s ORDER BY account", (self._executor,),
        ).fetchall()
        accounts = tuple(AccountState.model_validate(state) for (state,) in states)
        return ExecutorCheckpoint(
            progress=LoopProgress(candles_id=candles_id, trades_id=trades_id, control_id=control_id),
            kernel=KernelState.model_validate({**kernel_state, "accounts": accounts}),
        )
