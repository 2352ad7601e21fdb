-- Every gated baseline signal and what the confirmation gate made of it (the "rules baseline +
-- gate" pattern): the baseline's own reason, the gate's verdict and reason, the outcome, and
-- whether the signal went on to the RiskAgent. A rerun of the same signal is a no-op.

CREATE TABLE gate_decisions (
    signal_id        text        PRIMARY KEY,
    strategy         text        NOT NULL,
    symbol           text        NOT NULL,
    time             timestamptz NOT NULL,
    baseline_signal  jsonb       NOT NULL,
    baseline_reason  text        NOT NULL,
    gate             text,
    gate_verdict     text        CHECK (gate_verdict IN ('confirm', 'veto')),
    gate_reason      text        NOT NULL,
    outcome          text        NOT NULL,
    passed           boolean     NOT NULL
);

CREATE INDEX gate_decisions_strategy_time ON gate_decisions (strategy, time);
