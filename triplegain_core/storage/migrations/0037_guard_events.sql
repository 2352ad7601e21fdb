-- The market guards' trail: each time the stale-market guard, the volatility halt or the
-- failure breaker set or lifted its entry block, when (on the guard's clock: the wall clock
-- live, the replay's market clock in a replay) and why. A rerun of the same event is a no-op.

CREATE TABLE guard_events (
    guard   text        NOT NULL,
    action  text        NOT NULL CHECK (action IN ('set', 'cleared')),
    time    timestamptz NOT NULL,
    detail  text        NOT NULL,
    PRIMARY KEY (guard, time, action)
);

CREATE INDEX guard_events_time ON guard_events (time);
