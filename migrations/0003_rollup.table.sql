-- Without the Timescale-licensed build: the daily rollup is a table with the same columns as
-- the continuous aggregate, so the same queries serve both. It is maintained like one: the
-- ingest writer marks (vehicle, day) pairs dirty in the transaction that stores their values,
-- and a refresh worker recomputes those days from raw values (exact and idempotent), taking
-- marks as a work queue (FOR UPDATE SKIP LOCKED) so several instances can share it.
CREATE TABLE signal_daily (
    vehicle_id  integer NOT NULL,
    signal_id   integer NOT NULL,
    day         timestamptz NOT NULL,
    n           bigint NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    sum         double precision NOT NULL,
    sumsq       double precision NOT NULL,
    PRIMARY KEY (vehicle_id, signal_id, day)
);

CREATE TABLE rollup_dirty (
    vehicle_id  integer NOT NULL,
    day         timestamptz NOT NULL,
    marked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vehicle_id, day)
);
