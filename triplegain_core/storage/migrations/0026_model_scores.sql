-- Each model's scorecard per `model_performance` materialization, with the voting weight and the
-- primary model the ModelSelector derived from it. The latest `computed_at` is what the next
-- deliberation round weighs its votes with.

CREATE TABLE model_scores (
    computed_at        timestamptz      NOT NULL,
    model_name         text             NOT NULL,
    calls              integer          NOT NULL CHECK (calls >= 0),
    decided            integer          NOT NULL CHECK (decided >= 0),
    rejected           integer          NOT NULL CHECK (rejected >= 0),
    failed             integer          NOT NULL CHECK (failed >= 0),
    scored             integer          NOT NULL CHECK (scored >= 0),
    hit_rate           double precision CHECK (hit_rate BETWEEN 0 AND 1),
    mean_return_pct    double precision,
    brier              double precision CHECK (brier BETWEEN 0 AND 1),
    cost_usd           double precision NOT NULL CHECK (cost_usd >= 0),
    mean_latency_ms    double precision CHECK (mean_latency_ms >= 0),
    account_return_pct double precision,
    weight             double precision NOT NULL CHECK (weight BETWEEN 0 AND 1),
    is_primary         boolean          NOT NULL,
    PRIMARY KEY (computed_at, model_name)
);
