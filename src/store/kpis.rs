//! Service KPIs, computed from the data for a period: time from risk crossing to offer,
//! offer-to-booking conversion (of offers, which are visits, and of the jobs in them), booked
//! share of visits (a vehicle's service records at one workshop on one day are one visit,
//! each record one job), bay utilisation (opening hours in each workshop's time zone,
//! holidays excluded), fault hotspots and owners not seen for 90 days.

use super::StoreError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RiskToOffer {
    pub offers: i64,
    pub mean_seconds: Option<f64>,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Conversion {
    /// Offers made (each one visit, with one or more jobs).
    pub offers: i64,
    pub booked: i64,
    pub declined: i64,
    pub expired: i64,
    pub rate: Option<f64>,
    /// The jobs in those offers.
    #[sqlx(flatten)]
    pub jobs: JobConversion,
}

/// Jobs offered, booked (in a booked visit, not declined) and declined (alone or with their
/// visit).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct JobConversion {
    #[sqlx(rename = "jobs_offered")]
    pub offered: i64,
    #[sqlx(rename = "jobs_booked")]
    pub booked: i64,
    #[sqlx(rename = "jobs_declined")]
    pub declined: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Visits {
    /// Non-routine visits: a vehicle's records at one workshop on one (UTC) day.
    pub visits: i64,
    pub booked_by_aftercare: i64,
    /// Share of visits booked by Aftercare.
    pub share: Option<f64>,
    /// The jobs done in those visits (one service record each).
    pub jobs: i64,
    pub jobs_booked_by_aftercare: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Utilisation {
    pub workshop: String,
    pub open_bay_minutes: f64,
    pub booked_minutes: f64,
    pub utilisation: Option<f64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Hotspot {
    pub make: Option<String>,
    pub model: Option<String>,
    pub component: String,
    pub repairs: i64,
    pub vehicles: i64,
    pub failure_rate: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Kpis {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub risk_to_offer: RiskToOffer,
    pub conversion: Conversion,
    pub visits: Visits,
    pub bay_utilisation: Vec<Utilisation>,
    pub fault_hotspots: Vec<Hotspot>,
    pub owners_without_visit_90d: i64,
    pub owners_without_visit_90d_sample: Vec<String>,
}

/// The KPIs of [from, to); bay utilisation for at most `workshops` workshops by code, after
/// `after_workshop`.
pub async fn compute(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after_workshop: Option<&str>,
    workshops: i64,
) -> Result<Kpis, StoreError> {
    let risk_to_offer: RiskToOffer = sqlx::query_as(
        "SELECT count(*) AS offers, avg(s)::float8 AS mean_seconds,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS median_seconds,
                percentile_cont(0.9) WITHIN GROUP (ORDER BY s) AS p90_seconds
         FROM (SELECT extract(epoch FROM created_at - risk_scored_at)::float8 AS s
               FROM offers WHERE created_at >= $1 AND created_at < $2) x",
    )
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    let conversion: Conversion = sqlx::query_as(
        "WITH o AS (
             SELECT o.id, o.state, o.state IN ('booked', 'completed')
                        OR EXISTS (SELECT 1 FROM bookings b WHERE b.offer_id = o.id) AS booked
             FROM offers o WHERE o.created_at >= $1 AND o.created_at < $2)
         SELECT count(*) AS offers,
                count(*) FILTER (WHERE booked) AS booked,
                count(*) FILTER (WHERE state = 'declined') AS declined,
                count(*) FILTER (WHERE state = 'expired') AS expired,
                (count(*) FILTER (WHERE booked))::float8 / nullif(count(*), 0) AS rate,
                (SELECT count(*) FROM offer_jobs l JOIN o ON o.id = l.offer_id) AS jobs_offered,
                (SELECT count(*) FROM offer_jobs l JOIN o ON o.id = l.offer_id
                 WHERE o.booked AND l.declined_at IS NULL) AS jobs_booked,
                (SELECT count(*) FROM offer_jobs l JOIN o ON o.id = l.offer_id
                 WHERE l.declined_at IS NOT NULL) AS jobs_declined
         FROM o",
    )
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    let visits: Visits = sqlx::query_as(
        "WITH r AS (
             SELECT source, (vehicle_id, coalesce(workshop, ''),
                             (performed_at AT TIME ZONE 'UTC')::date) AS visit
             FROM service_records
             WHERE kind <> 'routine' AND performed_at >= $1 AND performed_at < $2)
         SELECT count(DISTINCT visit) AS visits,
                count(DISTINCT visit) FILTER (WHERE source = 'aftercare') AS booked_by_aftercare,
                (count(DISTINCT visit) FILTER (WHERE source = 'aftercare'))::float8
                    / nullif(count(DISTINCT visit), 0) AS share,
                count(*) AS jobs,
                count(*) FILTER (WHERE source = 'aftercare') AS jobs_booked_by_aftercare
         FROM r",
    )
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    let bay_utilisation: Vec<Utilisation> = sqlx::query_as(
        "WITH ws AS (
             SELECT * FROM workshops WHERE code > coalesce($3, '') ORDER BY code LIMIT $4),
         days AS (
             SELECT w.id, w.time_zone, d::date AS day
             FROM ws w,
                  generate_series(($1 AT TIME ZONE w.time_zone)::date,
                                  ($2 AT TIME ZONE w.time_zone)::date, interval '1 day') d),
         open AS (
             SELECT d.id, greatest((d.day + h.opens) AT TIME ZONE d.time_zone, $1) AS a,
                    least((d.day + h.closes) AT TIME ZONE d.time_zone, $2) AS b
             FROM days d JOIN workshop_hours h
               ON h.workshop_id = d.id AND h.weekday = extract(isodow FROM d.day)
             WHERE NOT EXISTS (SELECT 1 FROM workshop_holidays x
                               WHERE x.workshop_id = d.id AND x.day = d.day)),
         per AS (
             SELECT w.code,
                    coalesce((SELECT sum(extract(epoch FROM o.b - o.a)) FROM open o
                              WHERE o.id = w.id AND o.b > o.a), 0)::float8 / 60
                      * (SELECT count(*) FROM bays y WHERE y.workshop_id = w.id AND y.active) AS open_bay_minutes,
                    coalesce((SELECT sum(extract(epoch FROM least(upper(b.during), $2) - greatest(lower(b.during), $1)))
                              FROM bookings b WHERE b.workshop_id = w.id AND b.status <> 'cancelled'
                                AND b.during && tstzrange($1, $2)), 0)::float8 / 60 AS booked_minutes
             FROM ws w)
         SELECT code AS workshop, open_bay_minutes, booked_minutes,
                booked_minutes / nullif(open_bay_minutes, 0) AS utilisation
         FROM per ORDER BY code",
    )
    .bind(from)
    .bind(to)
    .bind(after_workshop)
    .bind(workshops)
    .fetch_all(pool)
    .await?;
    let fault_hotspots: Vec<Hotspot> = sqlx::query_as(
        "WITH fleet AS (SELECT make, model, count(*) AS vehicles FROM vehicle_profiles GROUP BY make, model)
         SELECT p.make, p.model, r.component, count(*) AS repairs, f.vehicles,
                count(*)::float8 / f.vehicles AS failure_rate
         FROM service_records r JOIN vehicle_profiles p ON p.vehicle_id = r.vehicle_id
         JOIN fleet f ON f.make IS NOT DISTINCT FROM p.make AND f.model IS NOT DISTINCT FROM p.model
         WHERE r.kind = 'repair' AND r.performed_at >= $1 AND r.performed_at < $2
         GROUP BY p.make, p.model, r.component, f.vehicles
         ORDER BY failure_rate DESC, repairs DESC, p.make, p.model, r.component LIMIT 20",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let unseen: Vec<(String, i64)> = sqlx::query_as(
        "SELECT v.vin, count(*) OVER () FROM vehicle_profiles p JOIN vehicles v ON v.id = p.vehicle_id
         WHERE NOT EXISTS (SELECT 1 FROM service_records r WHERE r.vehicle_id = p.vehicle_id
                           AND r.performed_at >= $1 - interval '90 days')
         ORDER BY v.vin LIMIT 50",
    )
    .bind(to)
    .fetch_all(pool)
    .await?;
    Ok(Kpis {
        from,
        to,
        risk_to_offer,
        conversion,
        visits,
        bay_utilisation,
        fault_hotspots,
        owners_without_visit_90d: unseen.first().map(|(_, n)| *n).unwrap_or(0),
        owners_without_visit_90d_sample: unseen.into_iter().map(|(v, _)| v).collect(),
    })
}
