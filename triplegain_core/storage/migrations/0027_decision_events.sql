-- The lifecycle of every deliberated decision (triplegain_core.llm.lifecycle): one row per
-- transition, written by the deliberation (generated, pending, approved or rejected), by a
-- person approving (`triplegain decision approve`), and by the executor (executed or failed,
-- open, closed). The latest row of a decision is its state.

CREATE TABLE decision_events (
    decision_id  text        NOT NULL,
    seq          integer     NOT NULL CHECK (seq >= 0),
    source       text,
    target       text        NOT NULL,
    at           timestamptz NOT NULL,
    actor        text        NOT NULL,
    reason       text        NOT NULL,
    PRIMARY KEY (decision_id, seq),
    CHECK ((seq = 0) = (source IS NULL))
);
