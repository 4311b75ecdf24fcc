-- Storage layout 2: one row per sample, its values as arrays, keyed by the message's identity.
-- The narrow `telemetry` table (one row per value) and the `samples` ledger become one table.
-- Existing rows stay where they are, renamed `telemetry_v1` and `samples_v1`; the service
-- moves them into the new table in batches while it runs (src/store/relayout.rs) and drops the
-- old tables once they are empty. Reads see both meanwhile (the `all_samples` view, 0033).
ALTER TABLE samples RENAME TO samples_v1;
ALTER TABLE samples_v1 RENAME CONSTRAINT samples_pkey TO samples_v1_pkey;
ALTER TABLE telemetry RENAME TO telemetry_v1;
ALTER TABLE telemetry_v1 RENAME CONSTRAINT telemetry_pkey TO telemetry_v1_pkey;

-- Which signals each vehicle has sent: the bound on distinct signals per vehicle
-- (storage.max_signals_per_vehicle), and the list the vehicle view reads latest values for.
-- Filled from the daily rollup, a hundredth of the values' size; the move of the old rows adds
-- whatever the rollup had not folded yet.
CREATE TABLE vehicle_signals (
    vehicle_id  integer NOT NULL,
    signal_id   integer NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vehicle_id, signal_id)
);
INSERT INTO vehicle_signals (vehicle_id, signal_id)
SELECT DISTINCT vehicle_id, signal_id FROM signal_daily;
