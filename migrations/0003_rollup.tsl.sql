-- TimescaleDB with the Timescale-licensed build: compression, retention and the daily
-- rollup as a continuous aggregate (real-time, so late data shows before the refresh).
ALTER TABLE telemetry SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'vehicle_id, signal_id',
    timescaledb.compress_orderby = 'ts'
);
SELECT add_compression_policy('telemetry', compress_after => INTERVAL '7 days');
SELECT add_retention_policy('telemetry', drop_after => INTERVAL '3 years');
ALTER TABLE samples SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'vehicle_id',
    timescaledb.compress_orderby = 'ts, seq'
);
SELECT add_compression_policy('samples', compress_after => INTERVAL '7 days');
SELECT add_retention_policy('samples', drop_after => INTERVAL '3 years');
CREATE MATERIALIZED VIEW signal_daily WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
    SELECT vehicle_id,
           signal_id,
           time_bucket(INTERVAL '1 day', ts) AS day,
           count(*) AS n,
           min(value) AS min,
           max(value) AS max,
           sum(value) AS sum,
           sum(value * value) AS sumsq
    FROM telemetry
    GROUP BY vehicle_id, signal_id, time_bucket(INTERVAL '1 day', ts)
    WITH NO DATA;
SELECT add_continuous_aggregate_policy('signal_daily',
    start_offset => INTERVAL '45 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');
