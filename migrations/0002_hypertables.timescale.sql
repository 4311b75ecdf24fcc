-- TimescaleDB (Apache-2 part): time-partitioned hypertables. Applied only when the extension
-- is available.
CREATE EXTENSION IF NOT EXISTS timescaledb;
SELECT create_hypertable('telemetry', by_range('ts', INTERVAL '1 day'), migrate_data => true);
SELECT create_hypertable('samples', by_range('ts', INTERVAL '7 days'), migrate_data => true);
SELECT create_hypertable('dtc_reports', by_range('ts', INTERVAL '30 days'), migrate_data => true);
SELECT create_hypertable('dtc_events', by_range('ts', INTERVAL '30 days'), migrate_data => true);
