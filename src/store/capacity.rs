//! Capacity SQL: workshops, bays, technicians, rosters, the job catalogue and parts stock
//! (upserts for the seed file and the API), and the one query that loads the plan of a visit
//! (a workshop, a period and the visit's jobs) for the slot search. Reusable by the demand
//! preview (issue 6).

use super::StoreError;
use crate::capacity::slots::{Bay, Busy, Calendar, Capacity, Technician};
use crate::capacity::{
    format_week, parse_time_zone, parse_week, BaySpec, HolidaySpec, JobPart, JobSpec, PartNeed,
    PartSpec, Plan, PlanMissing, Seed, StockSpec, TechnicianSpec, WeekPlan, WorkshopRef,
    WorkshopSpec,
};
use crate::component::Component;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use std::collections::BTreeMap;

/// JSON fields of one job `l` of a visit (an `offer_jobs` or `work_order_lines` row, its job
/// `lj`): what it is and its share of the visit's labour and price, as the offer and booking
/// views show it.
macro_rules! visit_job_json {
    () => {
        "'component', l.component, 'job', l.job_code, 'job_name', lj.name,
         'minutes', l.minutes, 'shared_setup_minutes', l.shared_setup_minutes,
         'labour_price_cents', l.labour_price_cents, 'parts_price_cents', l.parts_price_cents,
         'price_cents', l.labour_price_cents + l.parts_price_cents"
    };
}
pub(crate) use visit_job_json;

/// Loads a seed file in one transaction; loading it again changes nothing.
pub async fn load_seed(pool: &PgPool, seed: &Seed) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    for p in &seed.parts {
        upsert_part(&mut tx, p).await?;
    }
    for j in &seed.jobs {
        upsert_job(&mut tx, j).await?;
    }
    for w in &seed.workshops {
        upsert_workshop(&mut tx, w).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One change to capacity data, applied in its own transaction.
pub enum Change<'a> {
    Workshop(&'a WorkshopSpec),
    Bay(i32, &'a BaySpec),
    Technician(i32, &'a TechnicianSpec),
    Stock(i32, &'a StockSpec),
    Job(&'a JobSpec),
    Part(&'a PartSpec),
}

pub async fn apply(pool: &PgPool, change: Change<'_>) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    match change {
        Change::Workshop(w) => {
            upsert_workshop(&mut tx, w).await?;
        }
        Change::Bay(ws, b) => upsert_bay(&mut tx, ws, b).await?,
        Change::Technician(ws, t) => upsert_technician(&mut tx, ws, t).await?,
        Change::Stock(ws, s) => upsert_stock(&mut tx, ws, s).await?,
        Change::Job(j) => upsert_job(&mut tx, j).await?,
        Change::Part(p) => upsert_part(&mut tx, p).await?,
    }
    tx.commit().await?;
    Ok(())
}

pub async fn upsert_part(conn: &mut PgConnection, p: &PartSpec) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO parts (sku, name, price_cents, lead_time_days) VALUES ($1, $2, $3, $4)
         ON CONFLICT (sku) DO UPDATE SET name = $2, price_cents = $3, lead_time_days = $4",
    )
    .bind(&p.sku)
    .bind(&p.name)
    .bind(p.price_cents)
    .bind(p.lead_time_days)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Creates or replaces a job and its parts list. A new default job for a component takes
/// over from the old one.
pub async fn upsert_job(conn: &mut PgConnection, j: &JobSpec) -> Result<(), StoreError> {
    if j.default {
        sqlx::query("UPDATE jobs SET is_default = false WHERE component = $1 AND code <> $2")
            .bind(j.component.as_str())
            .bind(&j.code)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "INSERT INTO jobs (code, component, name, labour_minutes, skill, bay_capability,
                           labour_price_cents, is_default)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (code) DO UPDATE SET component = $2, name = $3, labour_minutes = $4,
             skill = $5, bay_capability = $6, labour_price_cents = $7, is_default = $8",
    )
    .bind(&j.code)
    .bind(j.component.as_str())
    .bind(&j.name)
    .bind(j.labour_minutes)
    .bind(&j.skill)
    .bind(&j.bay_capability)
    .bind(j.labour_price_cents)
    .bind(j.default)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM job_parts WHERE job_code = $1")
        .bind(&j.code)
        .execute(&mut *conn)
        .await?;
    for p in &j.parts {
        sqlx::query("INSERT INTO job_parts (job_code, sku, quantity) VALUES ($1, $2, $3)")
            .bind(&j.code)
            .bind(&p.sku)
            .bind(p.quantity)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("DELETE FROM job_setup WHERE job_code = $1")
        .bind(&j.code)
        .execute(&mut *conn)
        .await?;
    let steps: Vec<&str> = j.setup.iter().map(|s| s.step.as_str()).collect();
    let minutes: Vec<i32> = j.setup.iter().map(|s| s.minutes).collect();
    sqlx::query(
        "INSERT INTO job_setup (job_code, step, minutes)
         SELECT $1, * FROM unnest($2::text[], $3::int4[])",
    )
    .bind(&j.code)
    .bind(&steps)
    .bind(&minutes)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn week_rows(week: &WeekPlan) -> (Vec<i16>, Vec<NaiveTime>, Vec<NaiveTime>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for (i, ranges) in week.iter().enumerate() {
        for (a, b) in ranges {
            out.0.push(i as i16 + 1);
            out.1.push(*a);
            out.2.push(*b);
        }
    }
    out
}

/// Creates or replaces a workshop: calendar, bays, technicians and stock. Bays and
/// technicians it no longer lists are deactivated (their bookings keep pointing at them).
/// Returns the workshop's id. The spec must have been validated.
pub async fn upsert_workshop(conn: &mut PgConnection, w: &WorkshopSpec) -> Result<i32, StoreError> {
    let id: i32 = sqlx::query_scalar(
        "INSERT INTO workshops (code, name, time_zone, latitude, longitude, slot_minutes)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (code) DO UPDATE SET name = $2, time_zone = $3, latitude = $4,
             longitude = $5, slot_minutes = $6, updated_at = now()
         RETURNING id",
    )
    .bind(&w.code)
    .bind(&w.name)
    .bind(&w.time_zone)
    .bind(w.latitude)
    .bind(w.longitude)
    .bind(w.slot_minutes)
    .fetch_one(&mut *conn)
    .await?;
    let hours = parse_week("hours", &w.hours).unwrap_or_default();
    let (days, opens, closes) = week_rows(&hours);
    sqlx::query("DELETE FROM workshop_hours WHERE workshop_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO workshop_hours (workshop_id, weekday, opens, closes)
         SELECT $1, * FROM unnest($2::smallint[], $3::time[], $4::time[])",
    )
    .bind(id)
    .bind(&days)
    .bind(&opens)
    .bind(&closes)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM workshop_holidays WHERE workshop_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let hdays: Vec<NaiveDate> = w.holidays.iter().map(|h| h.day).collect();
    let hnames: Vec<&str> = w.holidays.iter().map(|h| h.name.as_str()).collect();
    sqlx::query(
        "INSERT INTO workshop_holidays (workshop_id, day, name)
         SELECT $1, * FROM unnest($2::date[], $3::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(&hdays)
    .bind(&hnames)
    .execute(&mut *conn)
    .await?;
    for b in &w.bays {
        upsert_bay(conn, id, b).await?;
    }
    let bay_codes: Vec<&str> = w.bays.iter().map(|b| b.code.as_str()).collect();
    sqlx::query("UPDATE bays SET active = false WHERE workshop_id = $1 AND code <> ALL($2)")
        .bind(id)
        .bind(&bay_codes)
        .execute(&mut *conn)
        .await?;
    for t in &w.technicians {
        upsert_technician(conn, id, t).await?;
    }
    let tech_codes: Vec<&str> = w.technicians.iter().map(|t| t.code.as_str()).collect();
    sqlx::query("UPDATE technicians SET active = false WHERE workshop_id = $1 AND code <> ALL($2)")
        .bind(id)
        .bind(&tech_codes)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM parts_stock WHERE workshop_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for s in &w.stock {
        upsert_stock(conn, id, s).await?;
    }
    Ok(id)
}

pub async fn upsert_bay(
    conn: &mut PgConnection,
    workshop_id: i32,
    b: &BaySpec,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO bays (workshop_id, code, capabilities, active) VALUES ($1, $2, $3, $4)
         ON CONFLICT (workshop_id, code) DO UPDATE SET capabilities = $3, active = $4",
    )
    .bind(workshop_id)
    .bind(&b.code)
    .bind(&b.capabilities)
    .bind(b.active)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn upsert_technician(
    conn: &mut PgConnection,
    workshop_id: i32,
    t: &TechnicianSpec,
) -> Result<(), StoreError> {
    let id: i32 = sqlx::query_scalar(
        "INSERT INTO technicians (workshop_id, code, name, skills, active) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (workshop_id, code) DO UPDATE SET name = $3, skills = $4, active = $5
         RETURNING id",
    )
    .bind(workshop_id)
    .bind(&t.code)
    .bind(&t.name)
    .bind(&t.skills)
    .bind(t.active)
    .fetch_one(&mut *conn)
    .await?;
    let shifts = parse_week("shifts", &t.shifts).unwrap_or_default();
    let (days, starts, ends) = week_rows(&shifts);
    sqlx::query("DELETE FROM technician_shifts WHERE technician_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO technician_shifts (technician_id, weekday, starts, ends)
         SELECT $1, * FROM unnest($2::smallint[], $3::time[], $4::time[])",
    )
    .bind(id)
    .bind(&days)
    .bind(&starts)
    .bind(&ends)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn upsert_stock(
    conn: &mut PgConnection,
    workshop_id: i32,
    s: &StockSpec,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO parts_stock (workshop_id, sku, on_hand, lead_time_days) VALUES ($1, $2, $3, $4)
         ON CONFLICT (workshop_id, sku) DO UPDATE SET on_hand = $3, lead_time_days = $4",
    )
    .bind(workshop_id)
    .bind(&s.sku)
    .bind(s.on_hand)
    .bind(s.lead_time_days)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn workshop_by_code(
    pool: &PgPool,
    code: &str,
) -> Result<Option<WorkshopRef>, StoreError> {
    let row: Option<Json<WorkshopRef>> = sqlx::query_scalar(
        "SELECT json_build_object('id', id, 'code', code, 'name', name, 'time_zone', time_zone,
                                  'latitude', latitude, 'longitude', longitude)
         FROM workshops WHERE code = $1",
    )
    .bind(code)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|j| j.0))
}

/// Other workshops ordered by distance from this one (where both have coordinates).
pub async fn nearby_workshops(
    pool: &PgPool,
    workshop_id: i32,
    n: i64,
) -> Result<Vec<WorkshopRef>, StoreError> {
    let rows: Vec<Json<WorkshopRef>> = sqlx::query_scalar(
        "SELECT json_build_object('id', o.id, 'code', o.code, 'name', o.name,
                                  'time_zone', o.time_zone, 'latitude', o.latitude,
                                  'longitude', o.longitude)
         FROM workshops w JOIN workshops o ON o.id <> w.id
         WHERE w.id = $1 AND o.latitude IS NOT NULL AND w.latitude IS NOT NULL
         ORDER BY (o.latitude - w.latitude) ^ 2
                  + ((o.longitude - w.longitude) * cos(radians(w.latitude))) ^ 2, o.id
         LIMIT $2",
    )
    .bind(workshop_id)
    .bind(n)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|j| j.0).collect())
}

#[derive(Debug, Deserialize)]
pub(crate) struct WeekRow {
    weekday: i16,
    a: NaiveTime,
    b: NaiveTime,
}

pub(crate) fn to_week(rows: &[WeekRow]) -> WeekPlan {
    let mut w: WeekPlan = Default::default();
    for r in rows {
        if let Some(day) = w.get_mut(usize::try_from(r.weekday - 1).unwrap_or(usize::MAX)) {
            day.push((r.a, r.b));
        }
    }
    for d in w.iter_mut() {
        d.sort();
    }
    w
}

/// The whole workshop as the API and seed file write it.
pub async fn workshop_spec(pool: &PgPool, code: &str) -> Result<Option<WorkshopSpec>, StoreError> {
    #[derive(Deserialize)]
    struct Row {
        code: String,
        name: String,
        time_zone: String,
        latitude: Option<f64>,
        longitude: Option<f64>,
        slot_minutes: i32,
        hours: Vec<WeekRow>,
        holidays: Vec<HolidaySpec>,
        bays: Vec<BaySpec>,
        technicians: Vec<TechRow>,
        stock: Vec<StockSpec>,
    }
    #[derive(Deserialize)]
    struct TechRow {
        code: String,
        name: String,
        skills: Vec<String>,
        active: bool,
        shifts: Vec<WeekRow>,
    }
    let row: Option<Json<Row>> = sqlx::query_scalar(
        "SELECT json_build_object(
            'code', w.code, 'name', w.name, 'time_zone', w.time_zone, 'latitude', w.latitude,
            'longitude', w.longitude, 'slot_minutes', w.slot_minutes,
            'hours', (SELECT coalesce(json_agg(json_build_object('weekday', weekday, 'a', opens, 'b', closes)), '[]')
                      FROM workshop_hours WHERE workshop_id = w.id),
            'holidays', (SELECT coalesce(json_agg(json_build_object('day', day, 'name', name) ORDER BY day), '[]')
                         FROM workshop_holidays WHERE workshop_id = w.id),
            'bays', (SELECT coalesce(json_agg(json_build_object('code', code, 'capabilities', capabilities, 'active', active) ORDER BY code), '[]')
                     FROM bays WHERE workshop_id = w.id),
            'technicians', (SELECT coalesce(json_agg(json_build_object('code', t.code, 'name', t.name, 'skills', t.skills, 'active', t.active,
                                'shifts', (SELECT coalesce(json_agg(json_build_object('weekday', weekday, 'a', starts, 'b', ends)), '[]')
                                           FROM technician_shifts s WHERE s.technician_id = t.id)) ORDER BY t.code), '[]')
                            FROM technicians t WHERE t.workshop_id = w.id),
            'stock', (SELECT coalesce(json_agg(json_build_object('sku', sku, 'on_hand', on_hand, 'lead_time_days', lead_time_days) ORDER BY sku), '[]')
                      FROM parts_stock WHERE workshop_id = w.id))
         FROM workshops w WHERE w.code = $1",
    )
    .bind(code)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|Json(r)| WorkshopSpec {
        code: r.code,
        name: r.name,
        time_zone: r.time_zone,
        latitude: r.latitude,
        longitude: r.longitude,
        slot_minutes: r.slot_minutes,
        hours: format_week(&to_week(&r.hours)),
        holidays: r.holidays,
        bays: r.bays,
        technicians: r
            .technicians
            .into_iter()
            .map(|t| TechnicianSpec {
                shifts: format_week(&to_week(&t.shifts)),
                code: t.code,
                name: t.name,
                skills: t.skills,
                active: t.active,
            })
            .collect(),
        stock: r.stock,
    }))
}

/// Workshops by code, cursor-paged.
pub async fn list_workshops(
    pool: &PgPool,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<WorkshopRef>, StoreError> {
    let rows: Vec<Json<WorkshopRef>> = sqlx::query_scalar(
        "SELECT json_build_object('id', id, 'code', code, 'name', name, 'time_zone', time_zone,
                                  'latitude', latitude, 'longitude', longitude)
         FROM workshops WHERE code > coalesce($1, '') ORDER BY code LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|j| j.0).collect())
}

/// The job catalogue with parts, by code, cursor-paged.
pub async fn list_jobs(
    pool: &PgPool,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<JobSpec>, StoreError> {
    let rows: Vec<Json<JobSpec>> = sqlx::query_scalar(&format!(
        "{JOB_JSON} WHERE j.code > coalesce($1, '') ORDER BY j.code LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|j| j.0).collect())
}

const JOB_JSON: &str = "SELECT json_build_object('code', j.code, 'component', j.component,
        'name', j.name, 'labour_minutes', j.labour_minutes, 'skill', j.skill,
        'bay_capability', j.bay_capability, 'labour_price_cents', j.labour_price_cents,
        'default', j.is_default,
        'parts', (SELECT coalesce(json_agg(json_build_object('sku', sku, 'quantity', quantity) ORDER BY sku), '[]')
                  FROM job_parts WHERE job_code = j.code),
        'setup', (SELECT coalesce(json_agg(json_build_object('step', step, 'minutes', minutes) ORDER BY step), '[]')
                  FROM job_setup WHERE job_code = j.code))
    FROM jobs j";

pub async fn job(pool: &PgPool, code: &str) -> Result<Option<JobSpec>, StoreError> {
    let row: Option<Json<JobSpec>> = sqlx::query_scalar(&format!("{JOB_JSON} WHERE j.code = $1"))
        .bind(code)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|j| j.0))
}

/// The job offers propose for a component.
pub async fn default_job(
    pool: &PgPool,
    component: Component,
) -> Result<Option<JobSpec>, StoreError> {
    let row: Option<Json<JobSpec>> = sqlx::query_scalar(&format!(
        "{JOB_JSON} WHERE j.component = $1 AND j.is_default"
    ))
    .bind(component.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|j| j.0))
}

pub async fn unknown_parts(pool: &PgPool, parts: &[JobPart]) -> Result<Vec<String>, StoreError> {
    let skus: Vec<&str> = parts.iter().map(|p| p.sku.as_str()).collect();
    Ok(sqlx::query_scalar(
        "SELECT s FROM unnest($1::text[]) s WHERE NOT EXISTS (SELECT 1 FROM parts WHERE sku = s)",
    )
    .bind(&skus)
    .fetch_all(pool)
    .await?)
}

/// JSON fields for a workshop `w` (a CTE): opening hours and holidays between `$3` and `$4`.
pub(crate) const CALENDAR_JSON: &str = "'hours', (SELECT coalesce(json_agg(json_build_object('weekday', weekday, 'a', opens, 'b', closes)), '[]')
                      FROM workshop_hours WHERE workshop_id = (SELECT id FROM w)),
            'holidays', (SELECT coalesce(json_agg(day), '[]') FROM workshop_holidays
                         WHERE workshop_id = (SELECT id FROM w)
                           AND day BETWEEN $3::date - 2 AND $4::date + 2),";

/// JSON field for a workshop `w` (a CTE): its active technicians with skills and shifts.
pub(crate) const TECHNICIANS_JSON: &str = "'technicians', (SELECT coalesce(json_agg(json_build_object('id', t.id, 'code', t.code, 'skills', t.skills,
                                'shifts', (SELECT coalesce(json_agg(json_build_object('weekday', weekday, 'a', starts, 'b', ends)), '[]')
                                           FROM technician_shifts s WHERE s.technician_id = t.id))), '[]')
                            FROM technicians t WHERE t.workshop_id = (SELECT id FROM w) AND t.active),";

#[derive(Deserialize)]
pub(crate) struct TechRow {
    id: i32,
    code: String,
    skills: Vec<String>,
    shifts: Vec<WeekRow>,
}

pub(crate) fn technicians(rows: Vec<TechRow>) -> Vec<Technician> {
    rows.into_iter()
        .map(|t| Technician {
            id: t.id,
            code: t.code,
            skills: t.skills,
            shifts: to_week(&t.shifts),
        })
        .collect()
}

/// One query: the workshop's calendar, active bays and technicians with rosters, live
/// bookings overlapping `[from, to)`, the visit's jobs (the leading one first) and the parts
/// they need together with stock. Refused (`PlanMissing`) when the workshop or a job does
/// not exist.
pub async fn plan(
    pool: &PgPool,
    workshop_code: &str,
    jobs: &[&str],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Result<Plan, PlanMissing>, StoreError> {
    let mut conn = pool.acquire().await?;
    plan_on(&mut conn, workshop_code, jobs, from, to).await
}

/// `plan` on a given connection (inside a booking transaction).
pub async fn plan_on(
    conn: &mut PgConnection,
    workshop_code: &str,
    job_codes: &[&str],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Result<Plan, PlanMissing>, StoreError> {
    #[derive(Deserialize)]
    struct Row {
        workshop: Option<WorkshopRow>,
        jobs: Vec<JobSpec>,
        hours: Vec<WeekRow>,
        holidays: Vec<NaiveDate>,
        bays: Vec<BayRow>,
        technicians: Vec<TechRow>,
        busy: Vec<BusyRow>,
        parts: Vec<PartNeed>,
    }
    #[derive(Deserialize)]
    struct WorkshopRow {
        #[serde(flatten)]
        r: WorkshopRef,
        slot_minutes: i32,
    }
    #[derive(Deserialize)]
    struct BayRow {
        id: i32,
        code: String,
        capabilities: Vec<String>,
    }
    #[derive(Deserialize)]
    struct BusyRow {
        booking_id: i64,
        bay_id: i32,
        technician_id: i32,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    }
    let Json(row): Json<Row> = sqlx::query_scalar(&format!(
        "WITH w AS (SELECT * FROM workshops WHERE code = $1),
              j(job) AS ({JOB_JSON} WHERE j.code = ANY($2))
         SELECT json_build_object(
            'workshop', (SELECT json_build_object('id', id, 'code', code, 'name', name,
                             'time_zone', time_zone, 'latitude', latitude, 'longitude', longitude,
                             'slot_minutes', slot_minutes) FROM w),
            'jobs', (SELECT coalesce(json_agg(job), '[]') FROM j),
            {CALENDAR_JSON}
            'bays', (SELECT coalesce(json_agg(json_build_object('id', id, 'code', code, 'capabilities', capabilities)), '[]')
                     FROM bays WHERE workshop_id = (SELECT id FROM w) AND active),
            {TECHNICIANS_JSON}
            'busy', (SELECT coalesce(json_agg(json_build_object('booking_id', id, 'bay_id', bay_id,
                         'technician_id', technician_id, 'start', lower(during), 'end', upper(during))), '[]')
                     FROM bookings WHERE workshop_id = (SELECT id FROM w) AND status <> 'cancelled'
                       AND during && tstzrange($3, $4)),
            'parts', (SELECT coalesce(json_agg(json_build_object('sku', p.sku, 'name', p.name,
                          'quantity', jp.quantity, 'price_cents', p.price_cents,
                          'on_hand', coalesce(s.on_hand, 0),
                          'lead_time_days', coalesce(s.lead_time_days, p.lead_time_days),
                          'reserved', (SELECT coalesce(sum(q.quantity), 0) FROM bookings b
                                       JOIN work_orders o ON o.booking_id = b.id
                                       JOIN work_order_lines l ON l.work_order_id = o.id
                                       JOIN job_parts q ON q.job_code = l.job_code AND q.sku = p.sku
                                       WHERE b.workshop_id = (SELECT id FROM w) AND b.status = 'booked'))
                          ORDER BY p.sku), '[]')
                      FROM (SELECT sku, sum(quantity)::int4 AS quantity FROM job_parts
                            WHERE job_code = ANY($2) GROUP BY sku) jp
                      JOIN parts p ON p.sku = jp.sku
                      LEFT JOIN parts_stock s ON s.workshop_id = (SELECT id FROM w) AND s.sku = p.sku))"
    ))
    .bind(workshop_code)
    .bind(job_codes)
    .bind(from)
    .bind(to)
    .fetch_one(&mut *conn)
    .await?;
    let Some(workshop) = row.workshop else {
        return Ok(Err(PlanMissing::Workshop(workshop_code.to_owned())));
    };
    let mut jobs = Vec::with_capacity(job_codes.len());
    for code in job_codes {
        match row.jobs.iter().find(|j| j.code == *code) {
            Some(j) => jobs.push(j.clone()),
            None => return Ok(Err(PlanMissing::Job((*code).to_owned()))),
        }
    }
    if jobs.is_empty() {
        return Ok(Err(PlanMissing::Job(String::new())));
    }
    // Validated when stored; a zone this build does not know plans in UTC rather than fail.
    let tz = parse_time_zone(&workshop.r.time_zone).unwrap_or(chrono_tz::UTC);
    let capacity = Capacity {
        workshop_id: workshop.r.id,
        calendar: Calendar {
            tz,
            slot_minutes: i64::from(workshop.slot_minutes),
            hours: to_week(&row.hours),
            holidays: row.holidays.into_iter().collect(),
        },
        bays: row
            .bays
            .into_iter()
            .map(|b| Bay {
                id: b.id,
                code: b.code,
                capabilities: b.capabilities,
            })
            .collect(),
        technicians: technicians(row.technicians),
        busy: row
            .busy
            .into_iter()
            .map(|b| Busy {
                booking_id: b.booking_id,
                bay_id: b.bay_id,
                technician_id: b.technician_id,
                start: b.start,
                end: b.end,
            })
            .collect(),
    };
    Ok(Ok(Plan {
        workshop: workshop.r,
        capacity,
        jobs,
        parts: row.parts,
    }))
}

/// Bay and technician codes by id, for showing windows.
pub async fn resource_codes(
    pool: &PgPool,
    workshop_id: i32,
) -> Result<(BTreeMap<i32, String>, BTreeMap<i32, String>), StoreError> {
    let bays: Vec<(i32, String)> =
        sqlx::query_as("SELECT id, code FROM bays WHERE workshop_id = $1")
            .bind(workshop_id)
            .fetch_all(pool)
            .await?;
    let techs: Vec<(i32, String)> =
        sqlx::query_as("SELECT id, code FROM technicians WHERE workshop_id = $1")
            .bind(workshop_id)
            .fetch_all(pool)
            .await?;
    Ok((bays.into_iter().collect(), techs.into_iter().collect()))
}
