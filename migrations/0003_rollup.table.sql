-- Without the Timescale-licensed build: the daily rollup is a table the ingest writer
-- maintains in the same transaction as the values it summarises. Same columns and queries as
-- the continuous aggregate.
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
