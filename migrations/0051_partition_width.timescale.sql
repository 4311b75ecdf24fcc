-- Sample chunks 30 days wide by default instead of 7 (plain PostgreSQL's reason is in
-- 0051_partition_width.plain.sql; on TimescaleDB, segmenting by vehicle compressed 30-day
-- chunks 5.5× against 4.5× for 7-day ones). New chunks only; existing ones keep their width.
ALTER TABLE storage_policy ALTER COLUMN chunk_days SET DEFAULT 30;
UPDATE storage_policy SET chunk_days = 30, updated_at = now() WHERE chunk_days = 7;
SELECT set_chunk_time_interval('samples', chunk_days * INTERVAL '1 day') FROM storage_policy;
