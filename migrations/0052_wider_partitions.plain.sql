-- Sample and DTC partitions 90 days wide by default instead of 30. A read whose plan is kept
-- (a prepared statement's generic plan) locks and prunes every partition of the table at each
-- call, not only those in its range: at the default retention (1,095 days, 37 partitions of
-- 30 days) a car's one-day read took 1.3 × the old narrow table's time, with 13 partitions of
-- 90 days 0.8 × (docs/performance.md). Existing partitions keep their width; new ones follow.
ALTER TABLE storage_policy ALTER COLUMN chunk_days SET DEFAULT 90;
ALTER TABLE storage_policy ALTER COLUMN dtc_chunk_days SET DEFAULT 90;
UPDATE storage_policy SET chunk_days = 90, updated_at = now() WHERE chunk_days = 30;
UPDATE storage_policy SET dtc_chunk_days = 90, updated_at = now() WHERE dtc_chunk_days = 30;
