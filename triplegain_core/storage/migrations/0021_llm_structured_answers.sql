-- Deliberation asks models for more than TradingDecisions (research cases, pitch reviews,
-- position verdicts): each call records the kind of answer it asked for, and a validated
-- answer of another kind is kept in ``answer``. A decided call carries exactly one of the two.

ALTER TABLE llm_calls ADD COLUMN answer_kind text NOT NULL DEFAULT 'trading_decision';
ALTER TABLE llm_calls ADD COLUMN answer jsonb;

ALTER TABLE llm_calls DROP CONSTRAINT llm_calls_check;
ALTER TABLE llm_calls ADD CONSTRAINT llm_calls_decided_has_result
    CHECK ((outcome = 'decided') = (decision IS NOT NULL OR answer IS NOT NULL));
ALTER TABLE llm_calls ADD CONSTRAINT llm_calls_decision_or_answer
    CHECK (decision IS NULL OR answer IS NULL);

CREATE INDEX llm_calls_kind_time ON llm_calls (answer_kind, time);
