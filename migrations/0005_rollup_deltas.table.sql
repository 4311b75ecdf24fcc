-- The daily rollup table is now maintained from per-batch deltas instead of dirty marks.
-- Stop instances running an older build before this runs: they still write marks.
-- Days still marked dirty are recomputed from raw values first, so nothing is lost.
DELETE FROM signal_daily d USING rollup_dirty k
WHERE d.vehicle_id = k.vehicle_id AND d.day = k.day;
INSERT INTO signal_daily (vehicle_id, signal_id, day, n, min, max, sum, sumsq)
SELECT t.vehicle_id, t.signal_id, k.day, count(*), min(t.value), max(t.value),
       sum(t.value), sum(t.value * t.value)
FROM rollup_dirty k
JOIN telemetry t ON t.vehicle_id = k.vehicle_id
                AND t.ts >= k.day AND t.ts < k.day + INTERVAL '1 day'
GROUP BY t.vehicle_id, t.signal_id, k.day;
DROP TABLE rollup_dirty;

-- One row per batch transaction that stored values: n, min, max, sum and sum of squares per
-- (vehicle, signal, day) of those values, in the service's compact binary format (see
-- src/store/rollup.rs). Append-only; a fold deletes rows as it adds them into signal_daily.
-- Stored uncompressed: compressing would cost the write path CPU for rows that live seconds.
CREATE TABLE rollup_delta (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    data  bytea NOT NULL
);
ALTER TABLE rollup_delta ALTER COLUMN data SET STORAGE EXTERNAL;
