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
-- (vehicle, signal, day) of those values, as parallel arrays in key order. Append-only; the
-- fold deletes rows as it adds them into signal_daily. The arrays are stored uncompressed:
-- compressing them would cost the write path CPU for rows that live a few seconds.
CREATE TABLE rollup_delta (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vehicle_id  integer[] NOT NULL,
    signal_id   integer[] NOT NULL,
    day         timestamptz[] NOT NULL,
    n           integer[] NOT NULL,
    min         double precision[] NOT NULL,
    max         double precision[] NOT NULL,
    sum         double precision[] NOT NULL,
    sumsq       double precision[] NOT NULL
);
ALTER TABLE rollup_delta
    ALTER COLUMN vehicle_id SET STORAGE EXTERNAL,
    ALTER COLUMN signal_id SET STORAGE EXTERNAL,
    ALTER COLUMN day SET STORAGE EXTERNAL,
    ALTER COLUMN n SET STORAGE EXTERNAL,
    ALTER COLUMN min SET STORAGE EXTERNAL,
    ALTER COLUMN max SET STORAGE EXTERNAL,
    ALTER COLUMN sum SET STORAGE EXTERNAL,
    ALTER COLUMN sumsq SET STORAGE EXTERNAL;
