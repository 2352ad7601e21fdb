-- Where TimescaleDB is available (installed and preloaded), the time-series tables become
-- hypertables. Elsewhere this migration changes nothing and the schema stays plain PostgreSQL.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND current_setting('shared_preload_libraries') LIKE '%timescaledb%' THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('candles', 'open_time', chunk_time_interval => INTERVAL '7 days', migrate_data => true, if_not_exists => true);
        PERFORM create_hypertable('trades', 'ts', chunk_time_interval => INTERVAL '1 day', migrate_data => true, if_not_exists => true);
        PERFORM create_hypertable('portfolio_snapshots', 'time', chunk_time_interval => INTERVAL '7 days', migrate_data => true, if_not_exists => true);
        PERFORM create_hypertable('indicator_features', 'open_time', chunk_time_interval => INTERVAL '7 days', migrate_data => true, if_not_exists => true);
    END IF;
END
$$;
