-- TimescaleDB: the sample table is a hypertable; its chunk interval (storage.chunk_days) and,
-- with the Timescale licence, its compression and retention policies are set by the service
-- from its configuration (src/store/retention.rs).
CREATE TABLE samples (
    vehicle_id     integer NOT NULL,
    ts             timestamptz NOT NULL,
    seq            bigint NOT NULL,
    received_at    timestamptz NOT NULL,
    -- ascending signal ids, and the value of each
    signal_ids     integer[] NOT NULL,
    signal_values  double precision[] NOT NULL,
    CHECK (cardinality(signal_ids) = cardinality(signal_values)),
    PRIMARY KEY (vehicle_id, ts, seq)
);
SELECT create_hypertable('samples', by_range('ts', INTERVAL '7 days'));
