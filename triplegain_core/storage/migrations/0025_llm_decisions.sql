-- The decisions a deliberation round handed (or would have handed) to the executor: one row per
-- model decision and per consensus, stamped with the market time it was deliberated on. The
-- executor's intents reuse `decision_id` as their `intent_id`, which ties each decision to its
-- risk check, orders, fills and positions. `refusal` says why a decision may not be traded;
-- where it went after that is its lifecycle, in `decision_events`.

CREATE TABLE llm_decisions (
    decision_id  text             PRIMARY KEY,
    request_id   text             NOT NULL,
    account      text             NOT NULL,
    source       text             NOT NULL,
    mode         text             NOT NULL,
    symbol       text             NOT NULL,
    market_time  timestamptz      NOT NULL,
    expires_at   timestamptz      NOT NULL CHECK (expires_at > market_time),
    action       text             NOT NULL CHECK (action IN ('LONG', 'SHORT', 'HOLD', 'CLOSE')),
    confidence   double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    decision     jsonb            NOT NULL,
    refusal      text
);

CREATE INDEX llm_decisions_source_time ON llm_decisions (source, market_time);
CREATE INDEX llm_decisions_request ON llm_decisions (request_id);
