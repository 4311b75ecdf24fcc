-- The scoring worker's queue bookkeeping (src/model/worker.rs), identical on plain PostgreSQL
-- and TimescaleDB. The ingest writer keeps upserting marks as before
-- (INSERT .. ON CONFLICT (vehicle_id) DO UPDATE SET marked_at = <now>) and never touches
-- these columns.
-- first_marked_at: when the vehicle became dirty since it was last scored. marked_at moves
--   with every batch, so a vehicle that keeps sending would be debounced forever; it is
--   scored once first_marked_at is older than the worker's max delay.
-- claimed_until: a worker's lease on the mark while it scores the vehicle. Other workers skip
--   the mark until then, and a crashed worker's marks come back when the lease runs out.
ALTER TABLE score_dirty
    ADD COLUMN first_marked_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN claimed_until timestamptz;

-- The periodic sweep looks for scores older than the staleness limit.
CREATE INDEX risk_current_scored ON risk_current (scored_at);
