-- One visit with several jobs (issue 16): an offer proposes, and a booking holds, the jobs
-- of one car whose windows fall close together. Identical on plain PostgreSQL and
-- TimescaleDB. Existing offers and work orders become one-job visits.

-- Set-up steps a job shares with other jobs of a visit (lift the car, take the wheels
-- off): a visit does each step once, so its labour is the jobs' sum less the repeats.
CREATE TABLE job_setup (
    job_code  text NOT NULL REFERENCES jobs (code) ON DELETE CASCADE,
    step      text NOT NULL CHECK (step ~ '^[a-z0-9_]{1,40}$'),
    minutes   integer NOT NULL CHECK (minutes > 0),
    PRIMARY KEY (job_code, step)
);

-- An offer's jobs, one line per component; line 1 leads. The offer row keeps its leading
-- job's columns (component, job_code, horizon, risk, reasons) and the visit's totals
-- (duration_minutes, estimated_cost_cents). minutes and labour_price_cents are the job's
-- share of the visit (a set-up step another job does is not counted twice).
-- open: the offer is proposed, notified or booked and the owner has not declined this job;
-- kept by the trigger below, so one open job per vehicle and component holds whatever
-- changes an offer's state.
CREATE TABLE offer_jobs (
    offer_id            bigint NOT NULL REFERENCES offers (id),
    line                smallint NOT NULL CHECK (line >= 1),
    vehicle_id          integer NOT NULL REFERENCES vehicles (id),
    component           text NOT NULL,
    job_code            text NOT NULL REFERENCES jobs (code),
    horizon             text NOT NULL CHECK (horizon IN ('p7', 'p30', 'p90')),
    risk                real NOT NULL,
    urgency_days        real,
    model_version       text NOT NULL,
    risk_scored_at      timestamptz NOT NULL,
    reasons             jsonb NOT NULL DEFAULT '[]',
    minutes             integer NOT NULL CHECK (minutes > 0),
    shared_setup_minutes integer NOT NULL DEFAULT 0 CHECK (shared_setup_minutes >= 0),
    labour_price_cents  bigint NOT NULL CHECK (labour_price_cents >= 0),
    parts_price_cents   bigint NOT NULL CHECK (parts_price_cents >= 0),
    declined_at         timestamptz,
    open                boolean NOT NULL DEFAULT true,
    PRIMARY KEY (offer_id, line),
    UNIQUE (offer_id, component)
);
CREATE UNIQUE INDEX offer_jobs_one_open ON offer_jobs (vehicle_id, component) WHERE open;
CREATE INDEX offer_jobs_declined ON offer_jobs (vehicle_id, component, declined_at)
    WHERE declined_at IS NOT NULL;

INSERT INTO offer_jobs (offer_id, line, vehicle_id, component, job_code, horizon, risk,
                        urgency_days, model_version, risk_scored_at, reasons, minutes,
                        labour_price_cents, parts_price_cents, declined_at, open)
SELECT o.id, 1, o.vehicle_id, o.component, o.job_code, o.horizon, o.risk, o.urgency_days,
       o.model_version, o.risk_scored_at, o.reasons, o.duration_minutes,
       least(j.labour_price_cents, o.estimated_cost_cents),
       o.estimated_cost_cents - least(j.labour_price_cents, o.estimated_cost_cents),
       CASE WHEN o.state = 'declined' THEN o.decided_at END,
       o.state IN ('proposed', 'notified', 'booked')
FROM offers o JOIN jobs j ON j.code = o.job_code;

-- The open-job index replaces one open offer per vehicle and component.
DROP INDEX offers_one_open;

CREATE FUNCTION offer_jobs_follow_offer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE offer_jobs
    SET open = NEW.state IN ('proposed', 'notified', 'booked') AND declined_at IS NULL
    WHERE offer_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER offer_jobs_follow_offer AFTER UPDATE OF state ON offers
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION offer_jobs_follow_offer();

-- A work order's lines: one per job of the booked visit, with its share of labour and
-- price and its parts ([{sku, quantity}]); live bookings' lines reserve the parts.
CREATE TABLE work_order_lines (
    work_order_id        bigint NOT NULL REFERENCES work_orders (id),
    line                 smallint NOT NULL CHECK (line >= 1),
    component            text NOT NULL,
    job_code             text NOT NULL REFERENCES jobs (code),
    minutes              integer NOT NULL CHECK (minutes > 0),
    shared_setup_minutes integer NOT NULL DEFAULT 0 CHECK (shared_setup_minutes >= 0),
    labour_price_cents   bigint NOT NULL CHECK (labour_price_cents >= 0),
    parts_price_cents    bigint NOT NULL CHECK (parts_price_cents >= 0),
    parts                jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (work_order_id, line)
);
CREATE INDEX work_order_lines_job ON work_order_lines (job_code);

INSERT INTO work_order_lines (work_order_id, line, component, job_code, minutes,
                              labour_price_cents, parts_price_cents, parts)
SELECT w.id, 1, j.component, j.code,
       greatest(1, (extract(epoch FROM upper(b.during) - lower(b.during)) / 60)::int),
       least(j.labour_price_cents, w.estimated_cost_cents),
       w.estimated_cost_cents - least(j.labour_price_cents, w.estimated_cost_cents),
       (SELECT coalesce(jsonb_agg(jsonb_build_object('sku', p.sku, 'quantity', p.quantity)
                                  ORDER BY p.sku), '[]')
        FROM job_parts p WHERE p.job_code = j.code)
FROM work_orders w JOIN bookings b ON b.id = w.booking_id JOIN jobs j ON j.code = b.job_code;
