//! Offer SQL: the booking queue's rows (an offer is one visit with one or more jobs, its
//! lines in `offer_jobs`), what the policy worker reads (current risk with owner consent,
//! open jobs, declines, odometer), and its writes. Every state change writes its outbox event
//! in the same transaction. Creation relies on the unique index `offer_jobs_one_open` (one
//! open job per vehicle and component) and the reminder/expiry updates are conditional, so
//! several workers can run at once without doubling anything.

use super::capacity::{plan_on, visit_job_json};
use super::outbox::{self, Event};
use super::StoreError;
use crate::capacity::{PlanMissing, Window};
use crate::visit::{IllegalTransition, OfferEvent, OfferState};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Acquire, PgConnection, PgPool};

/// One job of an offer's visit: its component's risk and reasons, and its line of the price.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OfferJob {
    #[schema(value_type = crate::component::Component)]
    pub component: String,
    pub job: String,
    pub job_name: String,
    /// The horizon whose risk crossed its threshold for this component: p7, p30 or p90.
    pub horizon: String,
    pub risk: f32,
    pub urgency_days: Option<f32>,
    /// This component's score's top factors.
    #[schema(value_type = Vec<crate::risk::Factor>)]
    pub reasons: Value,
    /// Its labour in the visit (a set-up step another job of the visit does is not counted
    /// twice).
    pub minutes: i32,
    /// The set-up minutes another job of the visit does for it.
    pub shared_setup_minutes: i32,
    pub labour_price_cents: i64,
    pub parts_price_cents: i64,
    /// Labour and parts: this job's line of the offer's price.
    pub price_cents: i64,
    /// When the owner declined this job (no longer part of the visit); null otherwise.
    pub declined_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = Offer)]
pub struct OfferView {
    pub id: i64,
    pub vin: String,
    #[schema(value_type = crate::component::Component)]
    pub component: String,
    /// proposed, notified, booked, declined, expired or completed.
    #[schema(value_type = OfferState)]
    pub state: String,
    /// The horizon whose risk crossed its threshold: p7, p30 or p90.
    pub horizon: String,
    pub risk: f32,
    pub urgency_days: Option<f32>,
    pub model_version: String,
    /// The score's top factors.
    #[schema(value_type = Vec<crate::risk::Factor>)]
    pub reasons: Value,
    pub job: String,
    pub job_name: String,
    pub workshop: String,
    pub duration_minutes: i32,
    pub estimated_cost_cents: i64,
    /// The best windows at the offer's workshop when it was made.
    #[schema(value_type = Vec<Window>)]
    pub windows: Json<Vec<Window>>,
    /// 0 none, 1 soft, 2 hard.
    pub reminder_level: i16,
    pub risk_scored_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub booking_id: Option<i64>,
    /// The visit's jobs, the leading one (the fields above) first; `duration_minutes` and
    /// `estimated_cost_cents` are the sums of those not declined.
    #[schema(value_type = Vec<OfferJob>)]
    pub jobs: Json<Vec<OfferJob>>,
}

const VIEW: &str = concat!(
    "SELECT o.id, v.vin, o.component, o.state, o.horizon, o.risk, o.urgency_days,
        o.model_version, o.reasons, o.job_code AS job, j.name AS job_name, w.code AS workshop,
        o.duration_minutes, o.estimated_cost_cents, o.windows, o.reminder_level,
        o.risk_scored_at, o.created_at, o.expires_at, o.decided_at,
        (SELECT b.id FROM bookings b WHERE b.offer_id = o.id AND b.status <> 'cancelled'
         ORDER BY b.id DESC LIMIT 1) AS booking_id,
        (SELECT coalesce(json_agg(json_build_object(",
    visit_job_json!(),
    ", 'horizon', l.horizon, 'risk', l.risk, 'urgency_days', l.urgency_days,
                'reasons', l.reasons, 'declined_at', l.declined_at) ORDER BY l.line), '[]')
         FROM offer_jobs l JOIN jobs lj ON lj.code = l.job_code WHERE l.offer_id = o.id) AS jobs
    FROM offers o JOIN vehicles v ON v.id = o.vehicle_id JOIN jobs j ON j.code = o.job_code
    JOIN workshops w ON w.id = o.workshop_id"
);

/// One offer, on the pool or inside a transaction.
pub async fn get<'e>(
    ex: impl sqlx::PgExecutor<'e>,
    id: i64,
) -> Result<Option<OfferView>, StoreError> {
    Ok(sqlx::query_as(&format!("{VIEW} WHERE o.id = $1"))
        .bind(id)
        .fetch_optional(ex)
        .await?)
}

/// Offers in id order after `after`, optionally in one state or of one vehicle. Only the
/// filters given are in the statement, so each combination is planned on its own index
/// (`offers_state`, `offers_vehicle`) rather than walking every offer in id order.
pub async fn list(
    pool: &PgPool,
    state: Option<OfferState>,
    vin: Option<&str>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<OfferView>, StoreError> {
    let mut q = sqlx::QueryBuilder::new(VIEW);
    q.push(" WHERE o.id > ").push_bind(after.unwrap_or(0));
    if let Some(s) = state {
        q.push(" AND o.state = ").push_bind(s.as_str());
    }
    if let Some(vin) = vin {
        q.push(" AND v.vin = ").push_bind(vin);
    }
    q.push(" ORDER BY o.id LIMIT ").push_bind(limit);
    Ok(q.build_query_as().fetch_all(pool).await?)
}

/// A current score with what the policy needs to know about its vehicle.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Candidate {
    pub vehicle_id: i32,
    pub vin: String,
    pub component: String,
    pub scored_at: DateTime<Utc>,
    pub model_version: String,
    pub p7: f32,
    pub p30: f32,
    pub p90: f32,
    pub urgency_days: Option<f32>,
    pub factors: Value,
    pub has_profile: bool,
    pub offers_consent: Option<bool>,
    pub home_workshop: Option<String>,
    pub open_offer: bool,
    pub last_declined_at: Option<DateTime<Utc>>,
    pub odometer_km: Option<f64>,
}

/// Scores at or above the lowest thresholds in use (a prefilter; the policy decides), in
/// (vehicle, component) order after `after`.
pub async fn candidates(
    pool: &PgPool,
    min: [f64; 3],
    after: (i32, &str),
    limit: i64,
) -> Result<Vec<Candidate>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT rc.vehicle_id, v.vin, rc.component, rc.scored_at, rc.model_version,
                rc.p7, rc.p30, rc.p90, rc.urgency_days, rc.factors,
                vp.vehicle_id IS NOT NULL AS has_profile, vp.offers_consent, vp.home_workshop,
                EXISTS (SELECT 1 FROM offer_jobs l WHERE l.vehicle_id = rc.vehicle_id
                        AND l.component = rc.component AND l.open) AS open_offer,
                (SELECT max(l.declined_at) FROM offer_jobs l WHERE l.vehicle_id = rc.vehicle_id
                 AND l.component = rc.component) AS last_declined_at,
                signal_latest(rc.vehicle_id, $6) AS odometer_km
         FROM risk_current rc JOIN vehicles v ON v.id = rc.vehicle_id
         LEFT JOIN vehicle_profiles vp ON vp.vehicle_id = rc.vehicle_id
         WHERE (rc.p7 >= $1 OR rc.p30 >= $2 OR rc.p90 >= $3)
           AND (rc.vehicle_id, rc.component) > ($4, $5)
         ORDER BY rc.vehicle_id, rc.component
         LIMIT $7",
    )
    .bind(min[0])
    .bind(min[1])
    .bind(min[2])
    .bind(after.0)
    .bind(after.1)
    .bind(crate::catalog::ODOMETER)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// An offer's row: its leading job and the visit's totals (`duration_minutes`,
/// `estimated_cost_cents`).
#[derive(Debug, Clone)]
pub struct NewOffer {
    pub vehicle_id: i32,
    pub component: String,
    pub horizon: &'static str,
    pub risk: f64,
    pub urgency_days: Option<f32>,
    pub model_version: String,
    pub risk_scored_at: DateTime<Utc>,
    pub reasons: Value,
    pub job_code: String,
    pub workshop_id: i32,
    pub duration_minutes: i32,
    pub estimated_cost_cents: i64,
    pub windows: Vec<Window>,
    pub odometer_km: Option<f64>,
    pub expires_at: DateTime<Utc>,
}

/// One job of a new offer's visit, with its share of the visit's labour and price.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub component: String,
    pub job_code: String,
    pub horizon: &'static str,
    pub risk: f64,
    pub urgency_days: Option<f32>,
    pub model_version: String,
    pub risk_scored_at: DateTime<Utc>,
    pub reasons: Value,
    pub minutes: i64,
    pub shared_setup_minutes: i64,
    pub labour_price_cents: i64,
    pub parts_price_cents: i64,
}

/// Creates a one-job offer and its `offer.created` event, unless an open offer holds the
/// vehicle's component (another worker was first): then `None`. Its line's price is split
/// into the job's labour and the rest (parts).
pub async fn create(pool: &PgPool, o: &NewOffer) -> Result<Option<OfferView>, StoreError> {
    let labour: Option<i64> =
        sqlx::query_scalar("SELECT labour_price_cents FROM jobs WHERE code = $1")
            .bind(&o.job_code)
            .fetch_optional(pool)
            .await?;
    let labour = labour.unwrap_or(0).min(o.estimated_cost_cents);
    let job = NewJob {
        component: o.component.clone(),
        job_code: o.job_code.clone(),
        horizon: o.horizon,
        risk: o.risk,
        urgency_days: o.urgency_days,
        model_version: o.model_version.clone(),
        risk_scored_at: o.risk_scored_at,
        reasons: o.reasons.clone(),
        minutes: i64::from(o.duration_minutes),
        shared_setup_minutes: 0,
        labour_price_cents: labour,
        parts_price_cents: o.estimated_cost_cents - labour,
    };
    create_visit(pool, o, std::slice::from_ref(&job)).await
}

/// Creates an offer for a visit with `jobs` (the leading one first) and its `offer.created`
/// event, unless an open offer holds one of the vehicle's components (another worker was
/// first): then `None`.
pub async fn create_visit(
    pool: &PgPool,
    o: &NewOffer,
    jobs: &[NewJob],
) -> Result<Option<OfferView>, StoreError> {
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO offers (vehicle_id, component, state, horizon, risk, urgency_days,
             model_version, risk_scored_at, reasons, job_code, workshop_id, duration_minutes,
             estimated_cost_cents, windows, odometer_km, last_notice_risk, expires_at)
         VALUES ($1, $2, 'proposed', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $4, $15)
         RETURNING id",
    )
    .bind(o.vehicle_id)
    .bind(&o.component)
    .bind(o.horizon)
    .bind(o.risk as f32)
    .bind(o.urgency_days)
    .bind(&o.model_version)
    .bind(o.risk_scored_at)
    .bind(&o.reasons)
    .bind(&o.job_code)
    .bind(o.workshop_id)
    .bind(o.duration_minutes)
    .bind(o.estimated_cost_cents)
    .bind(Json(&o.windows))
    .bind(o.odometer_km)
    .bind(o.expires_at)
    .fetch_one(&mut *tx)
    .await?;
    let lines = insert_jobs(&mut tx, id, o.vehicle_id, jobs).await;
    match lines {
        Err(e) if e.is_unique_violation() => return Ok(None),
        other => other?,
    }
    let view = get(&mut *tx, id).await?;
    if let Some(v) = &view {
        announce(&mut tx, "offer.created", format!("offer.created:{id}"), v).await?;
    }
    tx.commit().await?;
    Ok(view)
}

async fn insert_jobs(
    tx: &mut PgConnection,
    offer_id: i64,
    vehicle_id: i32,
    jobs: &[NewJob],
) -> Result<(), StoreError> {
    for (i, j) in jobs.iter().enumerate() {
        sqlx::query(
            "INSERT INTO offer_jobs (offer_id, line, vehicle_id, component, job_code, horizon,
                 risk, urgency_days, model_version, risk_scored_at, reasons, minutes,
                 shared_setup_minutes, labour_price_cents, parts_price_cents)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(offer_id)
        .bind(i16::try_from(i + 1).unwrap_or(i16::MAX))
        .bind(vehicle_id)
        .bind(&j.component)
        .bind(&j.job_code)
        .bind(j.horizon)
        .bind(j.risk as f32)
        .bind(j.urgency_days)
        .bind(&j.model_version)
        .bind(j.risk_scored_at)
        .bind(&j.reasons)
        .bind(i32::try_from(j.minutes).unwrap_or(i32::MAX))
        .bind(i32::try_from(j.shared_setup_minutes).unwrap_or(i32::MAX))
        .bind(j.labour_price_cents)
        .bind(j.parts_price_cents)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn announce(
    conn: &mut PgConnection,
    kind: &'static str,
    key: String,
    v: &OfferView,
) -> Result<(), StoreError> {
    announce_with(conn, kind, key, v, &[]).await
}

/// Writes an event with the offer as its data, plus `extra` fields.
async fn announce_with(
    conn: &mut PgConnection,
    kind: &'static str,
    key: String,
    v: &OfferView,
    extra: &[(&str, Value)],
) -> Result<(), StoreError> {
    let mut data = serde_json::to_value(v).unwrap_or(Value::Null);
    if let Some(obj) = data.as_object_mut() {
        for (k, x) in extra {
            obj.insert((*k).to_owned(), x.clone());
        }
    }
    outbox::enqueue(
        conn,
        &Event {
            key,
            kind,
            vin: Some(v.vin.clone()),
            data,
        },
    )
    .await
}

/// Locks an offer; its state, `None` when there is no such offer.
async fn lock_state(conn: &mut PgConnection, id: i64) -> Result<Option<OfferState>, StoreError> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM offers WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    // The column's CHECK lists exactly the machine's states.
    Ok(state.map(|s| s.parse().unwrap_or(OfferState::Expired)))
}

/// Declines a locked offer whose state allows it: every job not yet declined is declined
/// with it, and the event written. `None` when the offer vanished.
async fn decline_locked(conn: &mut PgConnection, id: i64) -> Result<Option<OfferView>, StoreError> {
    sqlx::query(
        "UPDATE offer_jobs SET declined_at = now() WHERE offer_id = $1 AND declined_at IS NULL",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE offers SET state = 'declined', decided_at = now(), updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let Some(v) = get(&mut *conn, id).await? else {
        return Ok(None);
    };
    announce(conn, "offer.declined", format!("offer.declined:{id}"), &v).await?;
    Ok(Some(v))
}

/// The owner declined. Refused (with the reason) unless the offer is proposed or notified.
pub async fn decline(
    pool: &PgPool,
    id: i64,
) -> Result<Option<Result<OfferView, IllegalTransition>>, StoreError> {
    let mut tx = pool.begin().await?;
    let Some(from) = lock_state(&mut tx, id).await? else {
        return Ok(None);
    };
    if let Err(e) = from.next(OfferEvent::Decline) {
        return Ok(Some(Err(e)));
    }
    let Some(v) = decline_locked(&mut tx, id).await? else {
        return Ok(None);
    };
    tx.commit().await?;
    Ok(Some(Ok(v)))
}

/// Why one job of an offer could not be declined.
#[derive(Debug, thiserror::Error)]
pub enum JobRefusal {
    #[error("no offer {0}")]
    NoOffer(i64),
    #[error("offer {0} has no {1} job")]
    NoJob(i64, String),
    #[error("the {1} job of offer {0} was already declined")]
    AlreadyDeclined(i64, String),
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error(transparent)]
    Missing(#[from] PlanMissing),
}

/// What the offer and its event say happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobDeclined {
    /// The job left the visit; the others remain.
    Job,
    /// It was the last job: the whole offer is declined.
    Offer,
}

/// The owner declined one job of an offer's visit (by component): the other jobs remain one
/// visit, their labour and price worked out again without it (a set-up step it did for them
/// is theirs again), the windows shortened to the new length, and the leading job is the
/// first that remains. Declining the last job declines the offer. Refused unless the offer
/// is proposed or notified.
pub async fn decline_job(
    pool: &PgPool,
    id: i64,
    component: &str,
) -> Result<Result<(OfferView, JobDeclined), JobRefusal>, StoreError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let Some(from) = lock_state(&mut tx, id).await? else {
        return Ok(Err(JobRefusal::NoOffer(id)));
    };
    if let Err(e) = from.next(OfferEvent::Decline) {
        return Ok(Err(e.into()));
    }
    let lines: Vec<(i16, String, String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT line, component, job_code, declined_at FROM offer_jobs WHERE offer_id = $1
         ORDER BY line",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    match lines.iter().find(|l| l.1 == component) {
        None => return Ok(Err(JobRefusal::NoJob(id, component.to_owned()))),
        Some((.., Some(_))) => {
            return Ok(Err(JobRefusal::AlreadyDeclined(id, component.to_owned())))
        }
        Some(_) => {}
    }
    let remaining: Vec<&(i16, String, String, Option<DateTime<Utc>>)> = lines
        .iter()
        .filter(|l| l.3.is_none() && l.1 != component)
        .collect();
    if remaining.is_empty() {
        let Some(v) = decline_locked(&mut tx, id).await? else {
            return Ok(Err(JobRefusal::NoOffer(id)));
        };
        tx.commit().await?;
        return Ok(Ok((v, JobDeclined::Offer)));
    }
    let workshop: String = sqlx::query_scalar(
        "SELECT w.code FROM offers o JOIN workshops w ON w.id = o.workshop_id WHERE o.id = $1",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let codes: Vec<&str> = remaining.iter().map(|l| l.2.as_str()).collect();
    let now = Utc::now();
    let plan = match plan_on(&mut tx, &workshop, &codes, now, now).await? {
        Ok(p) => p,
        Err(m) => return Ok(Err(m.into())),
    };
    sqlx::query(
        "UPDATE offer_jobs SET declined_at = now(), open = false
         WHERE offer_id = $1 AND component = $2",
    )
    .bind(id)
    .bind(component)
    .execute(&mut *tx)
    .await?;
    let costs = plan.job_costs();
    for (l, c) in remaining.iter().zip(&costs) {
        sqlx::query(
            "UPDATE offer_jobs SET minutes = $3, shared_setup_minutes = $4,
                 labour_price_cents = $5, parts_price_cents = $6
             WHERE offer_id = $1 AND line = $2",
        )
        .bind(id)
        .bind(l.0)
        .bind(i32::try_from(c.minutes).unwrap_or(i32::MAX))
        .bind(i32::try_from(c.shared_setup_minutes).unwrap_or(i32::MAX))
        .bind(c.labour_cents)
        .bind(c.parts_cents)
        .execute(&mut *tx)
        .await?;
    }
    let minutes = plan.minutes();
    let windows: Option<Json<Vec<Window>>> =
        sqlx::query_scalar("SELECT windows FROM offers WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let windows: Vec<Window> = windows
        .map(|w| w.0)
        .unwrap_or_default()
        .into_iter()
        .map(|w| Window {
            end: w.start + Duration::minutes(minutes),
            ..w
        })
        .collect();
    // The leading job's columns follow the first job that remains.
    sqlx::query(
        "UPDATE offers o SET component = l.component, job_code = l.job_code,
             horizon = l.horizon, risk = l.risk, urgency_days = l.urgency_days,
             model_version = l.model_version, risk_scored_at = l.risk_scored_at,
             reasons = l.reasons, duration_minutes = $2, estimated_cost_cents = $3,
             windows = $4, updated_at = now()
         FROM offer_jobs l WHERE o.id = $1 AND l.offer_id = o.id AND l.line = $5",
    )
    .bind(id)
    .bind(i32::try_from(minutes).unwrap_or(i32::MAX))
    .bind(plan.estimated_cost_cents())
    .bind(Json(&windows))
    .bind(remaining[0].0)
    .execute(&mut *tx)
    .await?;
    let Some(v) = get(&mut *tx, id).await? else {
        return Ok(Err(JobRefusal::NoOffer(id)));
    };
    announce_with(
        &mut tx,
        "offer.job_declined",
        format!("offer.job_declined:{id}:{component}"),
        &v,
        &[("declined_job", Value::from(component))],
    )
    .await?;
    tx.commit().await?;
    Ok(Ok((v, JobDeclined::Job)))
}

/// Expires unanswered offers past their time, and those whose owner has since opted out.
/// Returns how many.
pub async fn expire_due(pool: &PgPool, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE offers o SET state = 'expired', updated_at = now()
         WHERE o.state IN ('proposed', 'notified')
           AND (o.expires_at <= $1 OR EXISTS (SELECT 1 FROM vehicle_profiles p
                WHERE p.vehicle_id = o.vehicle_id AND NOT p.offers_consent))
         RETURNING o.id",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    for id in &ids {
        if let Some(v) = get(&mut *tx, *id).await? {
            announce(&mut tx, "offer.expired", format!("offer.expired:{id}"), &v).await?;
        }
    }
    tx.commit().await?;
    Ok(ids.len() as u64)
}

/// A notified offer with its vehicle's current score and odometer, for reminders.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Reminding {
    pub id: i64,
    pub horizon: String,
    pub reminder_level: i16,
    pub last_notice_at: Option<DateTime<Utc>>,
    pub last_notice_risk: Option<f32>,
    pub odometer_at_notice: Option<f64>,
    pub p7: f32,
    pub p30: f32,
    pub p90: f32,
    pub urgency_days: Option<f32>,
    pub odometer_km: Option<f64>,
}

pub async fn reminding(
    pool: &PgPool,
    after: i64,
    limit: i64,
) -> Result<Vec<Reminding>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT o.id, o.horizon, o.reminder_level, o.last_notice_at, o.last_notice_risk,
                o.odometer_km AS odometer_at_notice, rc.p7, rc.p30, rc.p90, rc.urgency_days,
                signal_latest(o.vehicle_id, $1) AS odometer_km
         FROM offers o JOIN risk_current rc
           ON rc.vehicle_id = o.vehicle_id AND rc.component = o.component
         WHERE o.state = 'notified' AND o.reminder_level < 2 AND o.id > $2
         ORDER BY o.id LIMIT $3",
    )
    .bind(crate::catalog::ODOMETER)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Raises an offer's reminder level and announces it, unless another worker already did.
pub async fn remind(
    pool: &PgPool,
    id: i64,
    level: i16,
    trigger: &str,
    risk_now: f64,
    odometer_now: Option<f64>,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE offers SET reminder_level = $2, last_notice_at = now(), last_notice_risk = $3,
             odometer_km = coalesce($4, odometer_km), updated_at = now()
         WHERE id = $1 AND state = 'notified' AND reminder_level < $2",
    )
    .bind(id)
    .bind(level)
    .bind(risk_now as f32)
    .bind(odometer_now)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if done {
        if let Some(v) = get(&mut *tx, id).await? {
            let name = if level >= 2 { "hard" } else { "soft" };
            announce_with(
                &mut tx,
                "offer.reminder",
                format!("offer.reminder:{id}:{name}"),
                &v,
                &[("level", name.into()), ("trigger", trigger.into())],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(done)
}

/// Raises an alarm for vehicles with a profile that have sent nothing since `silent_since`
/// (one open alarm each), and clears alarms of vehicles reporting again. Returns
/// (raised, cleared).
pub async fn silent_alarms(
    pool: &PgPool,
    silent_since: DateTime<Utc>,
) -> Result<(u64, u64), StoreError> {
    let mut tx = pool.begin().await?;
    let raised: Vec<(i64, String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "WITH last AS (
             SELECT p.vehicle_id, (SELECT max(s.ts) FROM all_samples s WHERE s.vehicle_id = p.vehicle_id) AS seen
             FROM vehicle_profiles p)
         INSERT INTO vehicle_alarms (vehicle_id, kind, last_seen)
         SELECT l.vehicle_id, 'silent', l.seen FROM last l
         WHERE l.seen IS NOT NULL AND l.seen < $1
         ON CONFLICT (vehicle_id, kind) WHERE cleared_at IS NULL DO NOTHING
         RETURNING id, (SELECT vin FROM vehicles WHERE id = vehicle_id), last_seen",
    )
    .bind(silent_since)
    .fetch_all(&mut *tx)
    .await?;
    for (id, vin, seen) in &raised {
        outbox::enqueue(
            &mut tx,
            &Event {
                key: format!("vehicle.silent:{id}"),
                kind: "vehicle.silent",
                vin: None,
                data: serde_json::json!({"vin": vin, "last_seen": seen}),
            },
        )
        .await?;
    }
    let cleared = sqlx::query(
        "UPDATE vehicle_alarms a SET cleared_at = now()
         WHERE a.cleared_at IS NULL AND a.kind = 'silent'
           AND EXISTS (SELECT 1 FROM all_samples s WHERE s.vehicle_id = a.vehicle_id AND s.ts >= $1)",
    )
    .bind(silent_since)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok((raised.len() as u64, cleared))
}

/// The id of a vehicle, created if new (benches and tests; ingest creates them in service).
pub async fn ensure_vehicle(pool: &PgPool, vin: &str) -> Result<i32, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO vehicles (vin) VALUES ($1) ON CONFLICT (vin) DO UPDATE SET vin = $1 RETURNING id",
    )
    .bind(vin)
    .fetch_one(pool)
    .await?)
}
