-- Core schema, identical on plain PostgreSQL and TimescaleDB.

CREATE TABLE vehicles (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vin         text NOT NULL UNIQUE CHECK (vin ~ '^[A-HJ-NPR-Z0-9]{17}$'),
    first_seen  timestamptz NOT NULL DEFAULT now()
);

-- Signal dictionary: VSS paths interned to small ids; unknown signals get a row too.
CREATE TABLE signals (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    first_seen  timestamptz NOT NULL DEFAULT now()
);

-- One row per signal value. The key makes a redelivered value a no-op.
CREATE TABLE telemetry (
    vehicle_id  integer NOT NULL,
    signal_id   integer NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL,
    PRIMARY KEY (vehicle_id, signal_id, ts)
);

-- The message ledger: one row per accepted telemetry sample. (vehicle, seq, ts) identifies a
-- sample; ts is part of the key so that a sender whose counter restarts is not mistaken for
-- a redelivery.
CREATE TABLE samples (
    vehicle_id  integer NOT NULL,
    seq         bigint NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    n_values    integer NOT NULL,
    PRIMARY KEY (vehicle_id, seq, ts)
);

CREATE TABLE dtc_reports (
    vehicle_id  integer NOT NULL,
    seq         bigint NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    source      text,
    mil         boolean,
    n_dtcs      integer NOT NULL,
    PRIMARY KEY (vehicle_id, seq, ts)
);

-- Every DTC entry of every accepted report: the history the lifecycle is derived from.
CREATE TABLE dtc_events (
    vehicle_id  integer NOT NULL,
    ts          timestamptz NOT NULL,
    seq         bigint NOT NULL,
    code        text NOT NULL,
    status      text NOT NULL CHECK (status IN ('pending', 'confirmed', 'permanent', 'active', 'cleared')),
    spn         integer,
    fmi         smallint,
    oc          smallint,
    sa          smallint,
    source      text,
    PRIMARY KEY (vehicle_id, code, ts, seq)
);

-- Lifecycle per vehicle and code, maintained from dtc_events with order-independent merges
-- (LEAST/GREATEST), so late and out-of-order reports give the same result.
CREATE TABLE dtcs (
    vehicle_id      integer NOT NULL REFERENCES vehicles (id),
    code            text NOT NULL,
    spn             integer,
    fmi             smallint,
    first_seen      timestamptz,           -- earliest report that did not clear it
    last_seen       timestamptz,           -- latest report that did not clear it
    cleared_at      timestamptz,           -- latest report that cleared it
    last_status     text NOT NULL,
    last_status_ts  timestamptz NOT NULL,
    reports         integer NOT NULL,
    PRIMARY KEY (vehicle_id, code)
);
CREATE INDEX dtcs_active ON dtcs (vehicle_id) WHERE cleared_at IS NULL OR last_seen > cleared_at;

-- Rejected messages, kept whole. Identical (topic, payload) deliveries share one row.
CREATE TABLE dead_letters (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest           bytea NOT NULL UNIQUE,
    topic            text NOT NULL,
    payload          bytea NOT NULL,
    payload_size     integer NOT NULL,
    truncated        boolean NOT NULL,
    reason           text NOT NULL,
    detail           text NOT NULL,
    first_received   timestamptz NOT NULL,
    last_received    timestamptz NOT NULL,
    deliveries       integer NOT NULL
);
CREATE INDEX dead_letters_reason ON dead_letters (reason, first_received);

-- API keys: only a SHA-256 of the secret is stored (the secret is 256 random bits).
CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL,
    prefix       text NOT NULL,
    secret_hash  bytea NOT NULL UNIQUE,
    scopes       text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
