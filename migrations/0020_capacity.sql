-- Workshop capacity: workshops (time zone, opening hours, holidays), bays with capabilities,
-- technicians with skills and weekly shift rosters, the job catalogue, parts stock and lead
-- times. Identical on plain PostgreSQL and TimescaleDB. Times of day are local to the
-- workshop's IANA time zone; the slot search turns them into instants (DST days differ).

CREATE TABLE workshops (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code          text NOT NULL UNIQUE CHECK (code ~ '^WS-[0-9]{2,}$'),
    name          text NOT NULL,
    time_zone     text NOT NULL,                 -- IANA name, checked by the application
    latitude      double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude     double precision CHECK (longitude BETWEEN -180 AND 180),
    slot_minutes  integer NOT NULL DEFAULT 30 CHECK (slot_minutes BETWEEN 5 AND 240),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- weekday: ISO, 1 = Monday .. 7 = Sunday. Several rows a day for a lunch break.
CREATE TABLE workshop_hours (
    workshop_id  integer NOT NULL REFERENCES workshops (id) ON DELETE CASCADE,
    weekday      smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    opens        time NOT NULL,
    closes       time NOT NULL CHECK (closes > opens),
    PRIMARY KEY (workshop_id, weekday, opens)
);

CREATE TABLE workshop_holidays (
    workshop_id  integer NOT NULL REFERENCES workshops (id) ON DELETE CASCADE,
    day          date NOT NULL,
    name         text NOT NULL DEFAULT '',
    PRIMARY KEY (workshop_id, day)
);

CREATE TABLE bays (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workshop_id   integer NOT NULL REFERENCES workshops (id) ON DELETE CASCADE,
    code          text NOT NULL,
    capabilities  text[] NOT NULL DEFAULT '{}',  -- e.g. lift, high_voltage, alignment
    active        boolean NOT NULL DEFAULT true,
    UNIQUE (workshop_id, code)
);

CREATE TABLE technicians (
    id           integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workshop_id  integer NOT NULL REFERENCES workshops (id) ON DELETE CASCADE,
    code         text NOT NULL,
    name         text NOT NULL,
    skills       text[] NOT NULL DEFAULT '{}',   -- e.g. brakes, hv_battery, diagnostics
    active       boolean NOT NULL DEFAULT true,
    UNIQUE (workshop_id, code)
);

-- The weekly roster: local shift times per weekday.
CREATE TABLE technician_shifts (
    technician_id  integer NOT NULL REFERENCES technicians (id) ON DELETE CASCADE,
    weekday        smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    starts         time NOT NULL,
    ends           time NOT NULL CHECK (ends > starts),
    PRIMARY KEY (technician_id, weekday, starts)
);

-- The job catalogue: what a workshop does about a component.
CREATE TABLE jobs (
    code            text PRIMARY KEY CHECK (code ~ '^[a-z0-9_]{1,64}$'),
    component       text NOT NULL CHECK (component IN ('battery_12v', 'traction_battery', 'brakes',
                        'tyres', 'cooling', 'ignition', 'emissions', 'oil')),
    name            text NOT NULL,
    labour_minutes  integer NOT NULL CHECK (labour_minutes BETWEEN 5 AND 1440),
    skill           text NOT NULL,
    bay_capability  text,                          -- null: any bay
    labour_price_cents bigint NOT NULL CHECK (labour_price_cents >= 0),
    is_default      boolean NOT NULL DEFAULT false -- the job offers propose for its component
);
CREATE UNIQUE INDEX jobs_one_default ON jobs (component) WHERE is_default;

CREATE TABLE parts (
    sku             text PRIMARY KEY,
    name            text NOT NULL,
    price_cents     bigint NOT NULL CHECK (price_cents >= 0),
    lead_time_days  integer NOT NULL DEFAULT 7 CHECK (lead_time_days BETWEEN 0 AND 365) -- from the supplier, where a workshop keeps none
);

CREATE TABLE job_parts (
    job_code  text NOT NULL REFERENCES jobs (code) ON DELETE CASCADE,
    sku       text NOT NULL REFERENCES parts (sku),
    quantity  integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (job_code, sku)
);

-- Stock per workshop; a part short of stock can be had after its lead time.
CREATE TABLE parts_stock (
    workshop_id     integer NOT NULL REFERENCES workshops (id) ON DELETE CASCADE,
    sku             text NOT NULL REFERENCES parts (sku),
    on_hand         integer NOT NULL CHECK (on_hand >= 0),
    lead_time_days  integer NOT NULL CHECK (lead_time_days BETWEEN 0 AND 365),
    PRIMARY KEY (workshop_id, sku)
);
