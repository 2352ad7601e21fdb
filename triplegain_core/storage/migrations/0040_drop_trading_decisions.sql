-- trading_decisions (schema v1) was never written: the models' decisions live in llm_decisions,
-- the strategies' signals in technical_signals and trade_intents. Documenting every table for
-- dbt (dbt/models/sources.yml) found it empty everywhere; it goes rather than mislead.
DROP TABLE IF EXISTS trading_decisions;
