//! Inputs of the demand preview for one workshop and period, in one query: calendar and
//! rostered technicians, the jobs of live bookings (each in its place in the visit) and of
//! open offers, at-risk vehicles that call it home and have no open offer for the component,
//! and the acceptance history of offered jobs per component.

use super::capacity::{technicians, to_week, TechRow, WeekRow, CALENDAR_JSON, TECHNICIANS_JSON};
use super::StoreError;
use crate::capacity::parse_time_zone;
use crate::capacity::preview::{acceptance, AtRisk, BookedJob, OpenOffer, PreviewInput};
use crate::capacity::slots::Calendar;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use sqlx::types::Json;
use sqlx::PgPool;
use std::collections::HashMap;

/// The workshop as the preview names it.
#[derive(Debug, Clone)]
pub struct PreviewWorkshop {
    pub code: String,
    pub name: String,
    pub time_zone: String,
}

/// Reads the preview's inputs for `[from, to)` with risks as they stand now (`risk_current`)
/// and offers' acceptance from every decided offer. `None` when the workshop does not exist.
/// Vehicles whose largest horizon risk is below `min_risk` are left out (noise, not demand).
pub async fn preview_input(
    pool: &PgPool,
    workshop_code: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    min_risk: f64,
) -> Result<Option<(PreviewWorkshop, PreviewInput)>, StoreError> {
    #[derive(Deserialize)]
    struct Row {
        workshop: Option<WorkshopRow>,
        hours: Vec<WeekRow>,
        holidays: Vec<NaiveDate>,
        technicians: Vec<TechRow>,
        booked: Vec<BookedRow>,
        offers: Vec<OfferRow>,
        at_risk: Vec<RiskRow>,
        acceptance: Vec<AcceptanceRow>,
    }
    #[derive(Deserialize)]
    struct WorkshopRow {
        code: String,
        name: String,
        time_zone: String,
        slot_minutes: i64,
    }
    #[derive(Deserialize)]
    struct BookedRow {
        vin: String,
        job: String,
        skill: String,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    }
    #[derive(Deserialize)]
    struct OfferRow {
        vin: String,
        component: String,
        job: String,
        skill: String,
        minutes: f64,
        windows: Vec<WindowRow>,
    }
    #[derive(Deserialize)]
    struct WindowRow {
        start: DateTime<Utc>,
        workshop: Option<String>,
    }
    #[derive(Deserialize)]
    struct RiskRow {
        vin: String,
        job: String,
        skill: String,
        minutes: f64,
        p7: f64,
        p30: f64,
        p90: f64,
    }
    #[derive(Deserialize)]
    struct AcceptanceRow {
        component: String,
        booked: u64,
        decided: u64,
    }
    let Json(row): Json<Row> = sqlx::query_scalar(&format!(
        "WITH w AS (SELECT * FROM workshops WHERE code = $1)
         SELECT json_build_object(
            'workshop', (SELECT json_build_object('code', code, 'name', name,
                             'time_zone', time_zone, 'slot_minutes', slot_minutes) FROM w),
            {CALENDAR_JSON}
            {TECHNICIANS_JSON}
            'booked', (SELECT coalesce(json_agg(json_build_object('vin', v.vin, 'job', x.job_code,
                           'skill', j.skill,
                           'start', x.at + make_interval(mins => (x.upto - x.minutes)::int),
                           'end', x.at + make_interval(mins => x.upto::int))), '[]')
                       FROM (SELECT b.vehicle_id, lower(b.during) AS at, l.job_code, l.minutes,
                                    sum(l.minutes) OVER (PARTITION BY b.id ORDER BY l.line) AS upto
                             FROM bookings b JOIN work_orders o ON o.booking_id = b.id
                             JOIN work_order_lines l ON l.work_order_id = o.id
                             WHERE b.workshop_id = (SELECT id FROM w) AND b.status <> 'cancelled'
                               AND b.during && tstzrange($3, $4)) x
                       JOIN jobs j ON j.code = x.job_code
                       JOIN vehicles v ON v.id = x.vehicle_id),
            'offers', (SELECT coalesce(json_agg(json_build_object('vin', v.vin,
                           'component', l.component, 'job', l.job_code, 'skill', j.skill,
                           'minutes', l.minutes, 'windows', o.windows)), '[]')
                       FROM offers o JOIN offer_jobs l ON l.offer_id = o.id AND l.declined_at IS NULL
                       JOIN jobs j ON j.code = l.job_code
                       JOIN vehicles v ON v.id = o.vehicle_id
                       WHERE o.state IN ('proposed', 'notified')
                         AND (o.workshop_id = (SELECT id FROM w)
                              OR o.windows @> json_build_array(json_build_object('workshop', $1::text))::jsonb)),
            'at_risk', (SELECT coalesce(json_agg(json_build_object('vin', v.vin, 'job', j.code,
                            'skill', j.skill, 'minutes', j.labour_minutes,
                            'p7', r.p7, 'p30', r.p30, 'p90', r.p90)), '[]')
                        FROM risk_current r
                        JOIN vehicle_profiles p ON p.vehicle_id = r.vehicle_id
                        JOIN vehicles v ON v.id = r.vehicle_id
                        JOIN jobs j ON j.component = r.component AND j.is_default
                        WHERE p.home_workshop = $1 AND greatest(r.p7, r.p30, r.p90) >= $2
                          AND NOT EXISTS (SELECT 1 FROM offer_jobs l WHERE l.vehicle_id = r.vehicle_id
                                          AND l.component = r.component AND l.open)),
            'acceptance', (SELECT coalesce(json_agg(json_build_object('component', component,
                               'booked', booked, 'decided', decided)), '[]')
                           FROM (SELECT l.component,
                                        count(*) FILTER (WHERE o.state IN ('booked', 'completed')
                                                         AND l.declined_at IS NULL) AS booked,
                                        count(*) AS decided
                                 FROM offer_jobs l JOIN offers o ON o.id = l.offer_id
                                 WHERE o.state IN ('booked', 'completed', 'declined', 'expired')
                                    OR l.declined_at IS NOT NULL
                                 GROUP BY l.component) a))"
    ))
    .bind(workshop_code)
    .bind(min_risk)
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    let Some(w) = row.workshop else {
        return Ok(None);
    };
    let tz = parse_time_zone(&w.time_zone).unwrap_or(chrono_tz::UTC);
    let input = PreviewInput {
        calendar: Calendar {
            tz,
            slot_minutes: w.slot_minutes,
            hours: to_week(&row.hours),
            holidays: row.holidays.into_iter().collect(),
        },
        technicians: technicians(row.technicians),
        booked: row
            .booked
            .into_iter()
            .map(|b| BookedJob {
                vin: b.vin,
                job: b.job,
                skill: b.skill,
                start: b.start,
                end: b.end,
            })
            .collect(),
        // An offer may propose windows at nearby workshops too; only this one's count here.
        offers: row
            .offers
            .into_iter()
            .map(|o| OpenOffer {
                windows: o
                    .windows
                    .iter()
                    .filter(|x| x.workshop.as_deref().is_none_or(|c| c == w.code))
                    .map(|x| x.start)
                    .collect(),
                vin: o.vin,
                component: o.component,
                job: o.job,
                skill: o.skill,
                minutes: o.minutes,
            })
            .collect(),
        at_risk: row
            .at_risk
            .into_iter()
            .map(|r| AtRisk {
                vin: r.vin,
                job: r.job,
                skill: r.skill,
                minutes: r.minutes,
                p7: r.p7,
                p30: r.p30,
                p90: r.p90,
            })
            .collect(),
        acceptance: row
            .acceptance
            .into_iter()
            .map(|a| (a.component, acceptance(a.booked, a.decided)))
            .collect::<HashMap<_, _>>(),
        as_of: Utc::now(),
    };
    Ok(Some((
        PreviewWorkshop {
            code: w.code,
            name: w.name,
            time_zone: w.time_zone,
        },
        input,
    )))
}

/// Work that arrived at a workshop: hours of the default job of each repaired or preventively
/// fixed component, per skill and local week index from `from` (routine services are not
/// forecast by the preview, so they are not counted against it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ArrivedWork {
    pub workshop: String,
    pub skill: String,
    /// Whole days since `from`.
    pub day: i64,
    pub hours: f64,
}

pub async fn arrived_work(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<ArrivedWork>, StoreError> {
    let rows: Vec<(String, String, i64, f64)> = sqlx::query_as(
        "SELECT r.workshop, j.skill,
                floor(extract(epoch FROM r.performed_at - $1) / 86400)::int8 AS day,
                sum(j.labour_minutes)::float8 / 60
         FROM service_records r JOIN jobs j ON j.component = r.component AND j.is_default
         WHERE r.kind IN ('repair', 'preventive') AND r.workshop IS NOT NULL
           AND r.performed_at >= $1 AND r.performed_at < $2
         GROUP BY 1, 2, 3",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(workshop, skill, day, hours)| ArrivedWork {
            workshop,
            skill,
            day,
            hours,
        })
        .collect())
}

/// Home workshop of every vehicle that has one, by vehicle id.
pub async fn home_workshops(pool: &PgPool) -> Result<HashMap<i32, String>, StoreError> {
    let rows: Vec<(i32, String)> = sqlx::query_as(
        "SELECT vehicle_id, home_workshop FROM vehicle_profiles WHERE home_workshop IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The default job of each component: (job code, skill, labour minutes).
pub async fn default_jobs(
    pool: &PgPool,
) -> Result<HashMap<String, (String, String, f64)>, StoreError> {
    let rows: Vec<(String, String, String, i32)> =
        sqlx::query_as("SELECT component, code, skill, labour_minutes FROM jobs WHERE is_default")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(c, code, skill, m)| (c, (code, skill, f64::from(m))))
        .collect())
}
