-- The storage policy every instance and command applies: chunk (partition) widths and
-- retention per table, compression age. `aftercare migrate` and `aftercare serve` write it
-- from their configuration ([storage]); partition maintenance and TimescaleDB's policies
-- follow it (src/store/retention.rs). One row.
CREATE TABLE storage_policy (
    id                          boolean PRIMARY KEY DEFAULT true CHECK (id),
    chunk_days                  integer NOT NULL DEFAULT 7 CHECK (chunk_days BETWEEN 1 AND 366),
    dtc_chunk_days              integer NOT NULL DEFAULT 30 CHECK (dtc_chunk_days BETWEEN 1 AND 366),
    retention_days              integer NOT NULL DEFAULT 1095 CHECK (retention_days >= 1),
    dtc_retention_days          integer NOT NULL DEFAULT 1095 CHECK (dtc_retention_days >= 1),
    dead_letter_retention_days  integer NOT NULL DEFAULT 365 CHECK (dead_letter_retention_days >= 1),
    compress_after_days         integer NOT NULL DEFAULT 7 CHECK (compress_after_days >= 1),
    ahead_days                  integer NOT NULL DEFAULT 14 CHECK (ahead_days >= 2),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO storage_policy DEFAULT VALUES;
