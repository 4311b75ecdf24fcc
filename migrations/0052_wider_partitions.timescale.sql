-- Sample and DTC chunks 90 days wide by default instead of 30 (plain PostgreSQL's reason is
-- in 0052_wider_partitions.plain.sql; a kept plan on a hypertable also covers every chunk).
-- New chunks only; existing ones keep their width. A fleet that sends often sets narrower
-- chunks: TimescaleDB advises that the recent chunks fit in a quarter of the memory.
ALTER TABLE storage_policy ALTER COLUMN chunk_days SET DEFAULT 90;
ALTER TABLE storage_policy ALTER COLUMN dtc_chunk_days SET DEFAULT 90;
UPDATE storage_policy SET chunk_days = 90, updated_at = now() WHERE chunk_days = 30;
UPDATE storage_policy SET dtc_chunk_days = 90, updated_at = now() WHERE dtc_chunk_days = 30;
SELECT set_chunk_time_interval('samples', chunk_days * INTERVAL '1 day') FROM storage_policy;
SELECT set_chunk_time_interval('dtc_reports', dtc_chunk_days * INTERVAL '1 day') FROM storage_policy;
SELECT set_chunk_time_interval('dtc_events', dtc_chunk_days * INTERVAL '1 day') FROM storage_policy;
