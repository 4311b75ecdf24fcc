-- A scoring mark the worker could not turn into a score (the vehicle has no data in the
-- scoring window, or does not exist) is kept, saying why and since when, instead of being
-- deleted as if the vehicle had been scored. It is not claimed again until new data marks
-- the vehicle (marked_at moves past released_at). Identical on plain PostgreSQL and
-- TimescaleDB.
ALTER TABLE score_dirty
    ADD COLUMN released_at timestamptz,
    ADD COLUMN released_reason text
        CHECK (released_reason IN ('no_recent_data', 'no_vehicle')),
    ADD CONSTRAINT score_dirty_released CHECK ((released_at IS NULL) = (released_reason IS NULL));
