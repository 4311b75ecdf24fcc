//! Risk scores in the database: the scoring work queue (`score_dirty`, claimed with a lease),
//! writing scores (history in `risk_scores`, latest in `risk_current`), the stale sweep, and
//! the reads behind the risk API. Same SQL on plain PostgreSQL and TimescaleDB.

use super::StoreError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Acquire, PgPool};
use std::time::Duration;

/// A claimed mark: the vehicle, and its `marked_at` when claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub vehicle_id: i32,
    pub marked_at: DateTime<Utc>,
}

/// Claims up to `limit` marks that have settled (not re-marked for `debounce`) or have
/// waited `max_delay` since the vehicle became dirty, and that no live lease holds. A mark
/// released without a score waits for new data (a later `marked_at`). The claim is one short
/// statement: row locks (`SKIP LOCKED`) last only for it, the lease guards the scoring that
/// follows, and the ingest writer never waits on a scoring worker.
pub async fn claim_marks(
    pool: &PgPool,
    limit: i64,
    debounce: Duration,
    max_delay: Duration,
    lease: Duration,
) -> Result<Vec<Claim>, StoreError> {
    let rows: Vec<(i32, DateTime<Utc>)> = sqlx::query_as(
        "WITH due AS (
             SELECT vehicle_id FROM score_dirty
             WHERE (claimed_until IS NULL OR claimed_until < now())
               AND (released_at IS NULL OR marked_at > released_at)
               AND (marked_at <= now() - make_interval(secs => $2)
                    OR greatest(first_marked_at, released_at) <= now() - make_interval(secs => $3))
             ORDER BY first_marked_at, vehicle_id
             LIMIT $1
             FOR UPDATE SKIP LOCKED)
         UPDATE score_dirty d SET claimed_until = now() + make_interval(secs => $4)
         FROM due WHERE d.vehicle_id = due.vehicle_id
         RETURNING d.vehicle_id, d.marked_at",
    )
    .bind(limit)
    .bind(debounce.as_secs_f64())
    .bind(max_delay.as_secs_f64())
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(vehicle_id, marked_at)| Claim {
            vehicle_id,
            marked_at,
        })
        .collect())
}

/// Why a claimed vehicle got no score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unscored {
    /// No data in the scoring window: nothing to say about it now.
    NoRecentData,
    /// The mark names no vehicle.
    NoVehicle,
}

impl Unscored {
    pub fn as_str(self) -> &'static str {
        match self {
            Unscored::NoRecentData => "no_recent_data",
            Unscored::NoVehicle => "no_vehicle",
        }
    }
}

/// After scoring: deletes the mark of each vehicle scored, keeps the mark of each one that
/// got no score with the reason (`released_at`, `released_reason`; claimed again only after
/// new data), and releases the others (marked again while being scored) so they are scored
/// again, counting their delay from `claimed_at`. Only marks whose `marked_at` is unchanged
/// since the claim are deleted or kept. Returns how many marks were deleted.
pub async fn release_marks(
    pool: &PgPool,
    claims: &[Claim],
    claimed_at: DateTime<Utc>,
    unscored: &[(i32, Unscored)],
) -> Result<u64, StoreError> {
    let ids: Vec<i32> = claims.iter().map(|c| c.vehicle_id).collect();
    let marked: Vec<DateTime<Utc>> = claims.iter().map(|c| c.marked_at).collect();
    let reasons: Vec<Option<&str>> = claims
        .iter()
        .map(|c| {
            unscored
                .iter()
                .find(|(v, _)| *v == c.vehicle_id)
                .map(|(_, why)| why.as_str())
        })
        .collect();
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let deleted: i64 = sqlx::query_scalar(
        "WITH k AS (SELECT * FROM UNNEST($1::int4[], $2::timestamptz[], $3::text[])
                        AS k(vehicle_id, marked_at, reason)),
         scored AS (
             DELETE FROM score_dirty d USING k
             WHERE d.vehicle_id = k.vehicle_id AND d.marked_at = k.marked_at AND k.reason IS NULL
             RETURNING d.vehicle_id),
         kept AS (
             UPDATE score_dirty d SET claimed_until = NULL, released_at = now(),
                                      released_reason = k.reason
             FROM k
             WHERE d.vehicle_id = k.vehicle_id AND d.marked_at = k.marked_at
               AND k.reason IS NOT NULL)
         SELECT count(*) FROM scored",
    )
    .bind(&ids)
    .bind(&marked)
    .bind(&reasons)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE score_dirty SET claimed_until = NULL, first_marked_at = LEAST(first_marked_at, $2)
         WHERE vehicle_id = ANY($1) AND claimed_until IS NOT NULL",
    )
    .bind(&ids)
    .bind(claimed_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(deleted as u64)
}

/// One component's score for one vehicle.
#[derive(Debug, Clone, PartialEq)]
pub struct NewScore {
    pub vehicle_id: i32,
    pub component: &'static str,
    pub p: [f32; 3],
    pub urgency_days: Option<f32>,
    pub factors: serde_json::Value,
}

/// Appends the scores to the history and makes them current, in one transaction. Current
/// rows of the scored vehicles for components no longer scored are removed.
pub async fn write_scores(
    pool: &PgPool,
    vehicle_ids: &[i32],
    model_version: &str,
    scored_at: DateTime<Utc>,
    scores: &[NewScore],
) -> Result<(), StoreError> {
    let vid: Vec<i32> = scores.iter().map(|s| s.vehicle_id).collect();
    let component: Vec<&str> = scores.iter().map(|s| s.component).collect();
    let p7: Vec<f32> = scores.iter().map(|s| s.p[0]).collect();
    let p30: Vec<f32> = scores.iter().map(|s| s.p[1]).collect();
    let p90: Vec<f32> = scores.iter().map(|s| s.p[2]).collect();
    let urgency: Vec<Option<f32>> = scores.iter().map(|s| s.urgency_days).collect();
    let factors: Vec<String> = scores.iter().map(|s| s.factors.to_string()).collect();
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query(
        "WITH k AS (
             SELECT * FROM UNNEST($1::int4[], $2::text[], $3::real[], $4::real[], $5::real[],
                                  $6::real[], $7::text[])
                 AS k(vehicle_id, component, p7, p30, p90, urgency, factors)),
         history AS (
             INSERT INTO risk_scores (vehicle_id, component, scored_at, model_version, p7, p30,
                                      p90, urgency_days, factors)
             SELECT vehicle_id, component, $8, $9, p7, p30, p90, urgency, factors::jsonb FROM k
             ON CONFLICT DO NOTHING)
         INSERT INTO risk_current (vehicle_id, component, scored_at, model_version, p7, p30, p90,
                                   urgency_days, factors)
         SELECT vehicle_id, component, $8, $9, p7, p30, p90, urgency, factors::jsonb FROM k
         ORDER BY vehicle_id, component
         ON CONFLICT (vehicle_id, component) DO UPDATE SET
             scored_at = EXCLUDED.scored_at, model_version = EXCLUDED.model_version,
             p7 = EXCLUDED.p7, p30 = EXCLUDED.p30, p90 = EXCLUDED.p90,
             urgency_days = EXCLUDED.urgency_days, factors = EXCLUDED.factors
         WHERE risk_current.scored_at <= EXCLUDED.scored_at",
    )
    .bind(&vid)
    .bind(&component)
    .bind(&p7)
    .bind(&p30)
    .bind(&p90)
    .bind(&urgency)
    .bind(&factors)
    .bind(scored_at)
    .bind(model_version)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM risk_current r
         WHERE r.vehicle_id = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM UNNEST($2::int4[], $3::text[]) AS k(vehicle_id, component)
                           WHERE k.vehicle_id = r.vehicle_id AND k.component = r.component)",
    )
    .bind(vehicle_ids)
    .bind(&vid)
    .bind(&component)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Marks vehicles that reported in the last 30 days but have no current score from
/// `model_version` newer than `stale_after`, due at once. Returns how many were marked.
pub async fn mark_stale(
    pool: &PgPool,
    model_version: &str,
    stale_after: Duration,
    debounce: Duration,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "INSERT INTO score_dirty (vehicle_id, marked_at, first_marked_at)
         SELECT v.id, now() - make_interval(secs => $3), now() - make_interval(secs => $3)
         FROM vehicles v
         WHERE EXISTS (SELECT 1 FROM signal_daily d JOIN signals s ON s.id = d.signal_id
                       WHERE s.name = $4 AND d.vehicle_id = v.id
                         AND d.day >= now() - INTERVAL '30 days')
           AND NOT EXISTS (SELECT 1 FROM risk_current r
                           WHERE r.vehicle_id = v.id AND r.model_version = $1
                             AND r.scored_at > now() - make_interval(secs => $2))
         ORDER BY v.id
         ON CONFLICT (vehicle_id) DO NOTHING",
    )
    .bind(model_version)
    .bind(stale_after.as_secs_f64())
    .bind(debounce.as_secs_f64())
    .bind(crate::catalog::ODOMETER)
    .execute(pool)
    .await?
    .rows_affected())
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Risk {
    #[schema(value_type = crate::component::Component)]
    pub component: String,
    /// Probability of a repair within 7 days.
    pub p7: f32,
    /// Within 30 days.
    pub p30: f32,
    /// Within 90 days.
    pub p90: f32,
    /// Likely days to failure; null when no horizon is at its alert threshold.
    pub urgency_days: Option<f32>,
    /// The top contributing reasons, in a service advisor's words.
    #[schema(value_type = Vec<crate::risk::Factor>)]
    pub factors: serde_json::Value,
    pub model_version: String,
    pub scored_at: DateTime<Utc>,
}

/// Current risk of one vehicle, highest 30-day risk first.
pub async fn vehicle_risk(pool: &PgPool, vehicle_id: i32) -> Result<Vec<Risk>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT component, p7, p30, p90, urgency_days, factors, model_version, scored_at
         FROM risk_current WHERE vehicle_id = $1 ORDER BY p30 DESC, component",
    )
    .bind(vehicle_id)
    .fetch_all(pool)
    .await?)
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct FleetRisk {
    pub vin: String,
    #[serde(skip)]
    pub vehicle_id: i32,
    /// From the registry profile, when there is one.
    pub make: Option<String>,
    pub model: Option<String>,
    pub home_workshop: Option<String>,
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub risk: Risk,
}

/// Position after the last returned row: (p30, vehicle id).
pub type FleetCursor = (f32, i32);

/// Vehicles ranked by 30-day risk (descending, then vehicle id), from after `after`, with
/// p30 ≥ `min`. With a component: that component's risk (served by the `risk_current_rank`
/// index); without: each vehicle once, with its riskiest component. With a workshop: only
/// vehicles that call it home.
pub async fn fleet_risk(
    pool: &PgPool,
    component: Option<&str>,
    workshop: Option<&str>,
    min: f32,
    after: Option<FleetCursor>,
    limit: i64,
) -> Result<(Vec<FleetRisk>, Option<FleetCursor>), StoreError> {
    let (after_p, after_id) = after.unwrap_or((f32::INFINITY, i32::MIN));
    // With a component the `risk_current_rank` index serves the page; without, the
    // `risk_current_p30` index walks every component's rows in risk order and keeps each
    // vehicle's riskiest (about one page of rows read, not the whole fleet sorted).
    let which = if component.is_some() {
        "r.component = $1"
    } else {
        "$1::text IS NULL AND NOT EXISTS (
             SELECT 1 FROM risk_current o WHERE o.vehicle_id = r.vehicle_id
               AND (o.p30 > r.p30 OR (o.p30 = r.p30 AND o.component < r.component)))"
    };
    let rows: Vec<FleetRisk> = sqlx::query_as(&format!(
        "SELECT v.vin, r.vehicle_id, p.make, p.model, p.home_workshop, r.component, r.p7,
                r.p30, r.p90, r.urgency_days, r.factors, r.model_version, r.scored_at
         FROM risk_current r
         JOIN vehicles v ON v.id = r.vehicle_id
         LEFT JOIN vehicle_profiles p ON p.vehicle_id = r.vehicle_id
         WHERE {which}
           AND r.p30 >= $2 AND r.p30 <= $3 AND (r.p30 < $3 OR r.vehicle_id > $4)
           AND ($6::text IS NULL OR p.home_workshop = $6)
         ORDER BY r.p30 DESC, r.vehicle_id
         LIMIT $5"
    ))
    .bind(component)
    .bind(min)
    .bind(after_p)
    .bind(after_id)
    .bind(limit + 1)
    .bind(workshop)
    .fetch_all(pool)
    .await?;
    let more = rows.len() as i64 > limit;
    let rows: Vec<FleetRisk> = rows.into_iter().take(limit.max(0) as usize).collect();
    let next = if more {
        rows.last().map(|r| (r.risk.p30, r.vehicle_id))
    } else {
        None
    };
    Ok((rows, next))
}
