-- The device register (issue 18): which vehicle a tracker is in. A tracker (an IMEI, a
-- Traccar uniqueId) moves between cars, so each registration holds from `valid_from` on; a
-- position is filed under the VIN registered at its own time.
CREATE TABLE device_register (
    device_id text NOT NULL CHECK (length(device_id) BETWEEN 1 AND 128),
    valid_from timestamptz NOT NULL,
    vin text NOT NULL CHECK (vin ~ '^[A-HJ-NPR-Z0-9]{17}$'),
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, valid_from)
);
