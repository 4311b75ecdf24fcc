-- Plain PostgreSQL: the sample table and the DTC ledgers are partitioned by time (native
-- declarative partitioning), so retention drops whole partitions instead of deleting rows.
-- Partitions are created ahead and dropped past retention by the service (src/store/retention.rs)
-- through the two functions below, which keep a registry of what they made.
CREATE TABLE samples (
    vehicle_id     integer NOT NULL,
    ts             timestamptz NOT NULL,
    seq            bigint NOT NULL,
    received_at    timestamptz NOT NULL,
    -- ascending signal ids, and the value of each
    signal_ids     integer[] NOT NULL,
    signal_values  double precision[] NOT NULL,
    CHECK (cardinality(signal_ids) = cardinality(signal_values)),
    PRIMARY KEY (vehicle_id, ts, seq)
) PARTITION BY RANGE (ts);

CREATE TABLE aftercare_partitions (
    name    text PRIMARY KEY,
    parent  text NOT NULL,
    lo      timestamptz NOT NULL,
    hi      timestamptz NOT NULL CHECK (hi > lo)
);
CREATE INDEX aftercare_partitions_parent ON aftercare_partitions (parent, lo);

-- Makes sure partitions of `parent` cover [p_from, p_to]: each missing range becomes a
-- partition ending at the next multiple of `width` since the epoch (or where the next existing
-- partition starts, if the width changed). A new partition is created standalone and attached,
-- which locks the parent less than CREATE TABLE .. PARTITION OF. Returns how many it created.
CREATE FUNCTION aftercare_ensure_partitions(p_parent text, p_from timestamptz,
                                            p_to timestamptz, p_width interval)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    w double precision := extract(epoch FROM p_width);
    t timestamptz;
    hi timestamptz;
    next_lo timestamptz;
    part text;
    created integer := 0;
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR w <= 0 THEN
        RETURN 0;
    END IF;
    t := to_timestamp(floor(extract(epoch FROM p_from) / w) * w);
    WHILE t <= p_to LOOP
        SELECT p.hi INTO hi FROM aftercare_partitions p
        WHERE p.parent = p_parent AND p.lo <= t AND t < p.hi;
        IF FOUND THEN
            t := hi;
            CONTINUE;
        END IF;
        hi := to_timestamp((floor(extract(epoch FROM t) / w) + 1) * w);
        SELECT min(p.lo) INTO next_lo FROM aftercare_partitions p
        WHERE p.parent = p_parent AND p.lo > t;
        IF next_lo IS NOT NULL AND next_lo < hi THEN
            hi := next_lo;
        END IF;
        part := p_parent || '_p' || to_char(t AT TIME ZONE 'UTC', 'YYYYMMDD"t"HH24MISS');
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       part, p_parent);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       p_parent, part, t, hi);
        INSERT INTO aftercare_partitions (name, parent, lo, hi) VALUES (part, p_parent, t, hi);
        created := created + 1;
        t := hi;
    END LOOP;
    RETURN created;
END
$$;

-- Drops the partitions of `parent` that end at or before `p_before`; returns how many.
CREATE FUNCTION aftercare_drop_partitions(p_parent text, p_before timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part text;
    dropped integer := 0;
BEGIN
    FOR part IN SELECT p.name FROM aftercare_partitions p
                WHERE p.parent = p_parent AND p.hi <= p_before ORDER BY p.lo LOOP
        EXECUTE format('DROP TABLE %I', part);
        DELETE FROM aftercare_partitions WHERE name = part;
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;

-- The DTC ledgers move into partitioned tables of the same shape.
ALTER TABLE dtc_reports RENAME TO dtc_reports_unpartitioned;
ALTER TABLE dtc_reports_unpartitioned RENAME CONSTRAINT dtc_reports_pkey TO dtc_reports_unpartitioned_pkey;
CREATE TABLE dtc_reports (
    vehicle_id  integer NOT NULL,
    seq         bigint NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    source      text,
    mil         boolean,
    n_dtcs      integer NOT NULL,
    PRIMARY KEY (vehicle_id, seq, ts)
) PARTITION BY RANGE (ts);
SELECT aftercare_ensure_partitions('dtc_reports', min(ts), max(ts), INTERVAL '30 days')
FROM dtc_reports_unpartitioned;
INSERT INTO dtc_reports SELECT * FROM dtc_reports_unpartitioned;
DROP TABLE dtc_reports_unpartitioned;

ALTER TABLE dtc_events RENAME TO dtc_events_unpartitioned;
ALTER TABLE dtc_events_unpartitioned RENAME CONSTRAINT dtc_events_pkey TO dtc_events_unpartitioned_pkey;
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
) PARTITION BY RANGE (ts);
SELECT aftercare_ensure_partitions('dtc_events', min(ts), max(ts), INTERVAL '30 days')
FROM dtc_events_unpartitioned;
INSERT INTO dtc_events SELECT * FROM dtc_events_unpartitioned;
DROP TABLE dtc_events_unpartitioned;
