-- What a restarted executor comes back to. Each trading-loop cycle writes its audit trail and
-- these rows in one transaction, so after a crash they describe exactly the trail stored.
-- One row per account (its balances, open positions, working orders, risk state, counters and
-- strategy memory as jsonb, see triplegain_core.execution.account.AccountState), owned by the
-- executor of the base account `executor`; one row per executor for the loop: the closed-candle
-- and trade stream ids it has processed up to, the newest control command it applied, and the
-- kernel's own state beside its accounts (triplegain_core.execution.kernel.KernelState without
-- its accounts: the minute of the latest snapshot, and whatever kernel-wide state joins it).

CREATE TABLE executor_checkpoints (
    account   text        PRIMARY KEY,
    executor  text        NOT NULL,
    state     jsonb       NOT NULL,
    saved_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX executor_checkpoints_executor ON executor_checkpoints (executor);

CREATE TABLE executor_loop_checkpoints (
    executor              text        PRIMARY KEY,
    candles_id            text        NOT NULL,
    trades_id             text,
    control_id            bigint      NOT NULL DEFAULT 0,
    kernel_state          jsonb       NOT NULL DEFAULT '{}',
    saved_at              timestamptz NOT NULL DEFAULT now()
);
