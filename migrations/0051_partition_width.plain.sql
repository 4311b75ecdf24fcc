-- Sample partitions 30 days wide by default instead of 7: a read plans every partition its
-- time range touches, and a car's 60-day or 180-day read touched 9 or 26 weekly ones (the
-- one-signal read took 2.1× the old narrow table's time; with 30-day partitions 1.14×, see
-- docs/performance.md). Existing partitions keep their width; new ones follow the policy.
ALTER TABLE storage_policy ALTER COLUMN chunk_days SET DEFAULT 30;
UPDATE storage_policy SET chunk_days = 30, updated_at = now() WHERE chunk_days = 7;
