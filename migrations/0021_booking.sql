-- Bookings, work orders, offers and the notification outbox. Booking integrity lives here:
-- exclusion constraints keep any two live bookings off the same bay or technician at
-- overlapping times, whatever the application does. btree_gist ships with PostgreSQL
-- (contrib) and with the TimescaleDB image.

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- The booking queue: one offer per vehicle and component at a time.
CREATE TABLE offers (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vehicle_id          integer NOT NULL REFERENCES vehicles (id),
    component           text NOT NULL,
    state               text NOT NULL CHECK (state IN ('proposed', 'notified', 'booked',
                            'declined', 'expired', 'completed')),
    horizon             text NOT NULL CHECK (horizon IN ('p7', 'p30', 'p90')),
    risk                real NOT NULL,
    urgency_days        real,
    model_version       text NOT NULL,
    risk_scored_at      timestamptz NOT NULL,     -- the score that crossed the threshold
    reasons             jsonb NOT NULL DEFAULT '[]',
    job_code            text NOT NULL REFERENCES jobs (code),
    workshop_id         integer NOT NULL REFERENCES workshops (id),
    duration_minutes    integer NOT NULL,
    estimated_cost_cents bigint NOT NULL,
    windows             jsonb NOT NULL DEFAULT '[]',
    odometer_km         double precision,         -- at the last notice, for distance reminders
    reminder_level      smallint NOT NULL DEFAULT 0 CHECK (reminder_level BETWEEN 0 AND 2),
    last_notice_at      timestamptz,
    last_notice_risk    real,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    decided_at          timestamptz,
    expires_at          timestamptz NOT NULL
);
CREATE UNIQUE INDEX offers_one_open ON offers (vehicle_id, component)
    WHERE state IN ('proposed', 'notified', 'booked');
CREATE INDEX offers_state ON offers (state, id);
CREATE INDEX offers_vehicle ON offers (vehicle_id, component, decided_at);

CREATE TABLE bookings (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workshop_id     integer NOT NULL REFERENCES workshops (id),
    bay_id          integer NOT NULL REFERENCES bays (id),
    technician_id   integer NOT NULL REFERENCES technicians (id),
    job_code        text NOT NULL REFERENCES jobs (code),
    vehicle_id      integer NOT NULL REFERENCES vehicles (id),
    offer_id        bigint REFERENCES offers (id),
    during          tstzrange NOT NULL CHECK (NOT isempty(during) AND lower_inc(during) AND NOT upper_inc(during)),
    status          text NOT NULL CHECK (status IN ('booked', 'cancelled', 'completed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bookings_bay_free EXCLUDE USING gist (bay_id WITH =, during WITH &&)
        WHERE (status <> 'cancelled'),
    CONSTRAINT bookings_technician_free EXCLUDE USING gist (technician_id WITH =, during WITH &&)
        WHERE (status <> 'cancelled')
);
CREATE INDEX bookings_workshop ON bookings USING gist (workshop_id, during) WHERE status <> 'cancelled';
CREATE UNIQUE INDEX bookings_one_live_per_offer ON bookings (offer_id) WHERE status = 'booked';

-- Created with the booking, in the same transaction.
CREATE TABLE work_orders (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id            bigint NOT NULL UNIQUE REFERENCES bookings (id),
    number                text NOT NULL UNIQUE,
    status                text NOT NULL CHECK (status IN ('open', 'cancelled', 'completed')),
    parts                 jsonb NOT NULL DEFAULT '[]',
    estimated_cost_cents  bigint NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now()
);

-- Alarms for vehicles that stopped reporting; one open alarm per vehicle.
CREATE TABLE vehicle_alarms (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vehicle_id   integer NOT NULL REFERENCES vehicles (id),
    kind         text NOT NULL CHECK (kind IN ('silent')),
    last_seen    timestamptz,
    raised_at    timestamptz NOT NULL DEFAULT now(),
    cleared_at   timestamptz
);
CREATE UNIQUE INDEX vehicle_alarms_open ON vehicle_alarms (vehicle_id, kind) WHERE cleared_at IS NULL;

-- Notifications, written in the transaction of the state change they announce. One row per
-- event and channel; event_key is the idempotency key receivers deduplicate on.
CREATE TABLE outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_key        text NOT NULL,
    channel          text NOT NULL CHECK (channel IN ('webhook', 'mqtt')),
    kind             text NOT NULL,
    vin              text,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    last_error       text,
    UNIQUE (event_key, channel)
);
CREATE INDEX outbox_due ON outbox (channel, next_attempt_at) WHERE delivered_at IS NULL;
