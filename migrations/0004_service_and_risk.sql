-- Labels and scores, identical on plain PostgreSQL and TimescaleDB.
-- Component names are the keys of src/component.rs.

-- Completed workshop jobs, posted by dealer systems (and the simulator) to
-- POST /v1/service-records. They are the model's labels: what workshops actually fixed.
-- (source, external_id) makes a re-posted record a no-op.
CREATE TABLE service_records (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vehicle_id    integer NOT NULL REFERENCES vehicles (id),
    source        text NOT NULL,                 -- the dealer system (or "simulator")
    external_id   text NOT NULL,                 -- its id for the job
    performed_at  timestamptz NOT NULL,
    odometer_km   double precision CHECK (odometer_km >= 0),
    workshop      text,
    component     text NOT NULL CHECK (component IN ('battery_12v', 'traction_battery', 'brakes',
                      'tyres', 'cooling', 'ignition', 'emissions', 'oil')),
    -- routine: scheduled service; repair: fixed after a failure; preventive: found and fixed early
    kind          text NOT NULL CHECK (kind IN ('routine', 'repair', 'preventive')),
    job           text NOT NULL,                 -- job code, e.g. "brake_pads_front"
    notes         text,
    received_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, external_id)
);
CREATE INDEX service_records_vehicle ON service_records (vehicle_id, component, performed_at);

-- Every score the model produced (risk history), and the latest per vehicle and component.
-- p7/p30/p90: probability of a failure or repair of the component within 7, 30, 90 days.
-- factors: top contributing factors, [{"feature", "value", "contribution", "text"}].
CREATE TABLE risk_scores (
    vehicle_id    integer NOT NULL REFERENCES vehicles (id),
    component     text NOT NULL,
    scored_at     timestamptz NOT NULL,
    model_version text NOT NULL,
    p7            real NOT NULL CHECK (p7 BETWEEN 0 AND 1),
    p30           real NOT NULL CHECK (p30 BETWEEN 0 AND 1),
    p90           real NOT NULL CHECK (p90 BETWEEN 0 AND 1),
    urgency_days  real,                          -- likely days to failure; null when not at risk
    factors       jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (vehicle_id, component, scored_at)
);

CREATE TABLE risk_current (
    vehicle_id    integer NOT NULL REFERENCES vehicles (id),
    component     text NOT NULL,
    scored_at     timestamptz NOT NULL,
    model_version text NOT NULL,
    p7            real NOT NULL,
    p30           real NOT NULL,
    p90           real NOT NULL,
    urgency_days  real,
    factors       jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (vehicle_id, component)
);
CREATE INDEX risk_current_rank ON risk_current (component, p30 DESC, vehicle_id);

-- Vehicles touched by new data since their last score. The ingest writer marks them in the
-- transaction that stores the data; the scoring worker takes marks older than its debounce as
-- a work queue (FOR UPDATE SKIP LOCKED) and deletes a mark only if it was not marked again.
CREATE TABLE score_dirty (
    vehicle_id  integer PRIMARY KEY,
    marked_at   timestamptz NOT NULL DEFAULT now()
);

-- What the OEM / dealer registry knows about a vehicle and its owner (PUT /v1/vehicles/{vin}).
-- Offers go to the home workshop, and only with the owner's consent.
CREATE TABLE vehicle_profiles (
    vehicle_id     integer PRIMARY KEY REFERENCES vehicles (id),
    make           text,
    model          text,
    model_year     smallint CHECK (model_year BETWEEN 1980 AND 2100),
    powertrain     text CHECK (powertrain IN ('bev', 'phev', 'hev', 'ice')),
    home_workshop  text,                          -- a workshop code
    owner_ref      text,                          -- the owner's id in the OEM/dealer CRM
    offers_consent boolean NOT NULL DEFAULT true, -- false: the owner opted out of proactive offers
    updated_at     timestamptz NOT NULL DEFAULT now()
);
