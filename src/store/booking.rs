//! Booking SQL: accepting an offer's window (booking, work order, offer state and outbox
//! event in one transaction), rescheduling, cancelling and completing. The exclusion
//! constraints `bookings_bay_free` / `bookings_technician_free` are what keeps two bookings
//! off one bay or technician; this code only picks which free pair to try, and tries the
//! next when the database says a concurrent booking took it.

use super::capacity::{plan_on, visit_job_json};
use super::outbox::{self, Event};
use super::StoreError;
use crate::capacity::slots::{open_for, pairs_at};
use crate::capacity::{JobPart, Plan, PlanMissing};
use crate::visit::{IllegalTransition, OfferEvent, OfferState};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

/// Why a booking was not made (none of these is a fault of the database).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("no offer {0}")]
    NoOffer(i64),
    #[error("no booking {0}")]
    NoBooking(i64),
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error("booking {0} is {1}; only a booked visit can change")]
    NotLive(i64, String),
    #[error(transparent)]
    Missing(#[from] PlanMissing),
    #[error("{0}")]
    Infeasible(String),
    #[error("the window was taken: no bay and technician are free for it any more")]
    Taken,
}

/// One job of a booked visit: a line of its work order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkOrderLine {
    #[schema(value_type = crate::component::Component)]
    pub component: String,
    pub job: String,
    pub job_name: String,
    /// Its labour in the visit (a set-up step another job does is not counted twice).
    pub minutes: i32,
    pub shared_setup_minutes: i32,
    pub labour_price_cents: i64,
    pub parts_price_cents: i64,
    pub price_cents: i64,
    /// The parts it takes, reserved at the workshop while the booking is live.
    pub parts: Vec<JobPart>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = Booking)]
pub struct BookingView {
    pub id: i64,
    pub offer_id: Option<i64>,
    pub vin: String,
    pub workshop: String,
    pub bay: String,
    pub technician: String,
    pub job: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// booked, cancelled or completed.
    pub status: String,
    pub work_order: Option<String>,
    pub estimated_cost_cents: Option<i64>,
    /// The visit's jobs, one line of the work order each (`job` is the first).
    #[schema(value_type = Vec<WorkOrderLine>)]
    pub jobs: Json<Vec<WorkOrderLine>>,
}

const VIEW: &str = concat!(
    "SELECT b.id, b.offer_id, v.vin, w.code AS workshop, y.code AS bay,
        t.code AS technician, b.job_code AS job, lower(b.during) AS start,
        upper(b.during) AS end, b.status, o.number AS work_order,
        o.estimated_cost_cents,
        (SELECT coalesce(json_agg(json_build_object(",
    visit_job_json!(),
    ", 'parts', l.parts) ORDER BY l.line), '[]')
         FROM work_order_lines l JOIN jobs lj ON lj.code = l.job_code
         WHERE l.work_order_id = o.id) AS jobs
    FROM bookings b JOIN vehicles v ON v.id = b.vehicle_id
    JOIN workshops w ON w.id = b.workshop_id JOIN bays y ON y.id = b.bay_id
    JOIN technicians t ON t.id = b.technician_id
    LEFT JOIN work_orders o ON o.booking_id = b.id"
);

/// One booking, on the pool or inside a transaction.
pub async fn view<'e>(
    ex: impl sqlx::PgExecutor<'e>,
    id: i64,
) -> Result<Option<BookingView>, StoreError> {
    Ok(sqlx::query_as(&format!("{VIEW} WHERE b.id = $1"))
        .bind(id)
        .fetch_optional(ex)
        .await?)
}

/// Bookings, newest first after `before` (an id cursor), optionally of one status.
/// Which bookings a list returns.
#[derive(Debug, Default, Clone, Copy)]
pub struct BookingFilter<'a> {
    pub status: Option<&'a str>,
    pub workshop: Option<&'a str>,
    /// Bookings overlapping `[from, to)`.
    pub during: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

pub async fn list(
    pool: &PgPool,
    filter: BookingFilter<'_>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<BookingView>, StoreError> {
    // Only the filters given are in the statement, so each combination gets its own plan
    // (on `bookings_status`, `bookings_workshop_id`) instead of one that walks every booking.
    let mut q = sqlx::QueryBuilder::new(VIEW);
    q.push(" WHERE b.id < ")
        .push_bind(before.unwrap_or(i64::MAX));
    if let Some(status) = filter.status {
        q.push(" AND b.status = ").push_bind(status);
    }
    if let Some(code) = filter.workshop {
        q.push(" AND b.workshop_id = (SELECT id FROM workshops WHERE code = ")
            .push_bind(code)
            .push(")");
    }
    if let Some((from, to)) = filter.during {
        q.push(" AND b.during && tstzrange(")
            .push_bind(from)
            .push(", ")
            .push_bind(to)
            .push(")");
    }
    q.push(" ORDER BY b.id DESC LIMIT ").push_bind(limit);
    Ok(q.build_query_as().fetch_all(pool).await?)
}

fn is_exclusion_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23P01"))
}

/// Loads the capacity around `start` and checks the start is one the visit can take.
async fn plan(
    tx: &mut Transaction<'_, Postgres>,
    workshop: &str,
    jobs: &[&str],
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Result<Plan, Refusal>, StoreError> {
    // Bookings at one workshop queue behind each other for the few milliseconds of this
    // transaction. Without it, two transactions inserting rows that conflict on a bay each
    // wait for the other in the exclusion check and one dies of a deadlock. The constraint,
    // not this lock, is what keeps bookings apart.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('aftercare.booking'), id) FROM workshops WHERE code = $1",
    )
    .bind(workshop)
    .execute(&mut **tx)
    .await?;
    let snap = match plan_on(
        &mut *tx,
        workshop,
        jobs,
        start - Duration::days(1),
        start + Duration::days(2),
    )
    .await?
    {
        Ok(s) => s,
        Err(m) => return Ok(Err(m.into())),
    };
    if start < now {
        return Ok(Err(Refusal::Infeasible(format!("{start} is in the past"))));
    }
    let ready = snap.parts_ready_at(now);
    if start < ready {
        return Ok(Err(Refusal::Infeasible(format!(
            "the parts for {} can be at {} only from {ready}",
            job_list(&snap),
            snap.workshop.code
        ))));
    }
    if !open_for(&snap.capacity, &snap.need(), start) {
        return Ok(Err(Refusal::Infeasible(format!(
            "{} does not take a {}-minute job at {start}: closed then, or not on its {}-minute grid",
            snap.workshop.code,
            snap.minutes(),
            snap.capacity.calendar.slot_minutes
        ))));
    }
    Ok(Ok(snap))
}

/// The plan's job codes, for messages.
fn job_list(plan: &Plan) -> String {
    let codes: Vec<&str> = plan.jobs.iter().map(|j| j.code.as_str()).collect();
    codes.join(" + ")
}

/// Tries the free pairs at `start` in order until one holds; `place` inserts or moves the
/// booking to (bay, technician) and returns its id. A pair a concurrent transaction took is
/// refused by the exclusion constraint, rolled back to a savepoint, and the next is tried.
async fn hold<F>(
    tx: &mut Transaction<'_, Postgres>,
    snap: &Plan,
    start: DateTime<Utc>,
    ignore: Option<i64>,
    mut place: F,
) -> Result<Option<i64>, StoreError>
where
    F: for<'t> FnMut(
        &'t mut PgConnection,
        i32,
        i32,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<i64, sqlx::Error>> + Send + 't>,
    >,
{
    for (bay, tech) in pairs_at(&snap.capacity, &snap.need(), start, ignore) {
        let mut sp = sqlx::Acquire::begin(&mut **tx).await?;
        match place(&mut sp, bay, tech).await {
            Ok(id) => {
                sp.commit().await?;
                return Ok(Some(id));
            }
            Err(e) if is_exclusion_violation(&e) => sp.rollback().await?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

struct LockedOffer {
    id: i64,
    vehicle_id: i32,
    state: OfferState,
    workshop: String,
    /// The visit's jobs the owner has not declined, the leading one first.
    jobs: Vec<String>,
}

async fn lock_offer(tx: &mut PgConnection, id: i64) -> Result<Option<LockedOffer>, StoreError> {
    let row: Option<(i64, i32, String, String)> = sqlx::query_as(
        "SELECT o.id, o.vehicle_id, o.state, w.code
         FROM offers o JOIN workshops w ON w.id = o.workshop_id
         WHERE o.id = $1 FOR UPDATE OF o",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, vehicle_id, state, workshop)) = row else {
        return Ok(None);
    };
    let jobs: Vec<String> = sqlx::query_scalar(
        "SELECT job_code FROM offer_jobs WHERE offer_id = $1 AND declined_at IS NULL ORDER BY line",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    Ok(Some(LockedOffer {
        id,
        vehicle_id,
        // The column's CHECK lists exactly the machine's states.
        state: state.parse().unwrap_or(OfferState::Expired),
        workshop,
        jobs,
    }))
}

/// The job codes of a booking's visit, in line order.
async fn booked_jobs(tx: &mut PgConnection, booking_id: i64) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT l.job_code FROM work_orders o JOIN work_order_lines l ON l.work_order_id = o.id
         WHERE o.booking_id = $1 ORDER BY l.line",
    )
    .bind(booking_id)
    .fetch_all(&mut *tx)
    .await?)
}

async fn set_offer_state(
    tx: &mut PgConnection,
    id: i64,
    state: OfferState,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE offers SET state = $2, updated_at = now(),
             decided_at = CASE WHEN $2 IN ('booked', 'declined') THEN now() ELSE decided_at END
         WHERE id = $1",
    )
    .bind(id)
    .bind(state.as_str())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn announce(
    tx: &mut PgConnection,
    kind: &'static str,
    key: String,
    booking: &BookingView,
) -> Result<(), StoreError> {
    let data = serde_json::to_value(booking).unwrap_or(Value::Null);
    outbox::enqueue(
        tx,
        &Event {
            key,
            kind,
            vin: Some(booking.vin.clone()),
            data,
        },
    )
    .await
}

/// Accepts an offer's window: books one bay and one technician for `[start, start + the
/// visit's labour)`, creates the work order with a line per job (parts reserved), moves the
/// offer to booked and writes the event, all in one transaction. `workshop` overrides the
/// offer's (a nearby workshop it also proposed).
pub async fn accept(
    pool: &PgPool,
    offer_id: i64,
    workshop: Option<&str>,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Result<BookingView, Refusal>, StoreError> {
    let mut tx = pool.begin().await?;
    let Some(offer) = lock_offer(&mut tx, offer_id).await? else {
        return Ok(Err(Refusal::NoOffer(offer_id)));
    };
    let next = match offer.state.next(OfferEvent::Accept) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e.into())),
    };
    let ws = workshop.unwrap_or(&offer.workshop).to_owned();
    let jobs: Vec<&str> = offer.jobs.iter().map(String::as_str).collect();
    let snap = match plan(&mut tx, &ws, &jobs, start, now).await? {
        Ok(s) => s,
        Err(r) => return Ok(Err(r)),
    };
    let end = start + Duration::minutes(snap.minutes());
    let (ws_id, lead, vehicle) = (
        snap.capacity.workshop_id,
        offer.jobs.first().cloned().unwrap_or_default(),
        offer.vehicle_id,
    );
    let booked = hold(&mut tx, &snap, start, None, |conn, bay, tech| {
        let lead = lead.clone();
        Box::pin(async move {
            sqlx::query_scalar(
                "INSERT INTO bookings (workshop_id, bay_id, technician_id, job_code, vehicle_id,
                                       offer_id, during, status)
                 VALUES ($1, $2, $3, $4, $5, $6, tstzrange($7, $8, '[)'), 'booked') RETURNING id",
            )
            .bind(ws_id)
            .bind(bay)
            .bind(tech)
            .bind(lead)
            .bind(vehicle)
            .bind(offer_id)
            .bind(start)
            .bind(end)
            .fetch_one(conn)
            .await
        })
    })
    .await?;
    let Some(booking_id) = booked else {
        return Ok(Err(Refusal::Taken));
    };
    work_order(&mut tx, booking_id, &snap).await?;
    set_offer_state(&mut tx, offer.id, next).await?;
    let Some(view) = view(&mut *tx, booking_id).await? else {
        return Ok(Err(Refusal::NoBooking(booking_id)));
    };
    announce(
        &mut tx,
        "booking.created",
        format!("booking.created:{booking_id}"),
        &view,
    )
    .await?;
    tx.commit().await?;
    Ok(Ok(view))
}

/// The booking's work order: the visit's parts and price, and a line per job.
async fn work_order(tx: &mut PgConnection, booking_id: i64, plan: &Plan) -> Result<(), StoreError> {
    let order: i64 = sqlx::query_scalar(
        "INSERT INTO work_orders (booking_id, number, status, parts, estimated_cost_cents)
         VALUES ($1, 'WO-' || lpad($1::text, 8, '0'), 'open', $2, $3) RETURNING id",
    )
    .bind(booking_id)
    .bind(json!(plan.parts))
    .bind(plan.estimated_cost_cents())
    .fetch_one(&mut *tx)
    .await?;
    for (i, (job, cost)) in plan.jobs.iter().zip(plan.job_costs()).enumerate() {
        sqlx::query(
            "INSERT INTO work_order_lines (work_order_id, line, component, job_code, minutes,
                 shared_setup_minutes, labour_price_cents, parts_price_cents, parts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(order)
        .bind(i16::try_from(i + 1).unwrap_or(i16::MAX))
        .bind(job.component.as_str())
        .bind(&job.code)
        .bind(i32::try_from(cost.minutes).unwrap_or(i32::MAX))
        .bind(i32::try_from(cost.shared_setup_minutes).unwrap_or(i32::MAX))
        .bind(cost.labour_cents)
        .bind(cost.parts_cents)
        .bind(json!(job.parts))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn lock_booking(
    tx: &mut PgConnection,
    id: i64,
) -> Result<Result<(BookingView, Option<i64>), Refusal>, StoreError> {
    let row: Option<(String, Option<i64>)> =
        sqlx::query_as("SELECT status, offer_id FROM bookings WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((status, offer)) = row else {
        return Ok(Err(Refusal::NoBooking(id)));
    };
    if status != "booked" {
        return Ok(Err(Refusal::NotLive(id, status)));
    }
    match view(&mut *tx, id).await? {
        Some(v) => Ok(Ok((v, offer))),
        None => Ok(Err(Refusal::NoBooking(id))),
    }
}

/// Moves a booking to a new start at the same workshop (any free bay and technician).
pub async fn reschedule(
    pool: &PgPool,
    id: i64,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Result<BookingView, Refusal>, StoreError> {
    let mut tx = pool.begin().await?;
    let (old, _) = match lock_booking(&mut tx, id).await? {
        Ok(b) => b,
        Err(r) => return Ok(Err(r)),
    };
    let jobs = booked_jobs(&mut tx, id).await?;
    let jobs: Vec<&str> = jobs.iter().map(String::as_str).collect();
    let snap = match plan(&mut tx, &old.workshop, &jobs, start, now).await? {
        Ok(s) => s,
        Err(r) => return Ok(Err(r)),
    };
    let end = start + Duration::minutes(snap.minutes());
    let moved = hold(&mut tx, &snap, start, Some(id), |conn, bay, tech| {
        Box::pin(async move {
            sqlx::query_scalar(
                "UPDATE bookings SET bay_id = $2, technician_id = $3,
                     during = tstzrange($4, $5, '[)'), updated_at = now()
                 WHERE id = $1 RETURNING id",
            )
            .bind(id)
            .bind(bay)
            .bind(tech)
            .bind(start)
            .bind(end)
            .fetch_one(conn)
            .await
        })
    })
    .await?;
    if moved.is_none() {
        return Ok(Err(Refusal::Taken));
    }
    let Some(view) = view(&mut *tx, id).await? else {
        return Ok(Err(Refusal::NoBooking(id)));
    };
    let key = format!("booking.rescheduled:{id}:{}", start.timestamp());
    announce(&mut tx, "booking.rescheduled", key, &view).await?;
    tx.commit().await?;
    Ok(Ok(view))
}

/// Cancels a booking: bay and technician are free again, the work order is cancelled and
/// the offer is open again for another window.
pub async fn cancel(pool: &PgPool, id: i64) -> Result<Result<BookingView, Refusal>, StoreError> {
    finish(pool, id, "cancelled", OfferEvent::CancelBooking, None).await
}

/// Completes a booking: the job was done. Writes the service record the model learns from
/// (`kind` preventive or repair, source aftercare).
pub async fn complete(
    pool: &PgPool,
    id: i64,
    kind: &str,
) -> Result<Result<BookingView, Refusal>, StoreError> {
    finish(pool, id, "completed", OfferEvent::Complete, Some(kind)).await
}

async fn finish(
    pool: &PgPool,
    id: i64,
    status: &'static str,
    event: OfferEvent,
    record_kind: Option<&str>,
) -> Result<Result<BookingView, Refusal>, StoreError> {
    let mut tx = pool.begin().await?;
    let (_, offer) = match lock_booking(&mut tx, id).await? {
        Ok(b) => b,
        Err(r) => return Ok(Err(r)),
    };
    if let Some(offer_id) = offer {
        if let Some(o) = lock_offer(&mut tx, offer_id).await? {
            match o.state.next(event) {
                Ok(next) => set_offer_state(&mut tx, o.id, next).await?,
                Err(e) => return Ok(Err(e.into())),
            }
        }
    }
    sqlx::query("UPDATE bookings SET status = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(status)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE work_orders SET status = $2 WHERE booking_id = $1")
        .bind(id)
        .bind(status)
        .execute(&mut *tx)
        .await?;
    if let Some(kind) = record_kind {
        // One record per job of the visit: `booking-{id}` for the first, as for a one-job
        // visit, then `booking-{id}-{line}`.
        sqlx::query(
            "INSERT INTO service_records (vehicle_id, source, external_id, performed_at, odometer_km,
                                          workshop, component, kind, job)
             SELECT b.vehicle_id, 'aftercare',
                    'booking-' || b.id || CASE WHEN l.line > 1 THEN '-' || l.line ELSE '' END,
                    now(),
                    signal_latest(b.vehicle_id, $3),
                    w.code, l.component, $2, l.job_code
             FROM bookings b JOIN workshops w ON w.id = b.workshop_id
             JOIN work_orders o ON o.booking_id = b.id
             JOIN work_order_lines l ON l.work_order_id = o.id
             WHERE b.id = $1
             ORDER BY l.line
             ON CONFLICT (source, external_id) DO NOTHING",
        )
        .bind(id)
        .bind(kind)
        .bind(crate::catalog::ODOMETER)
        .execute(&mut *tx)
        .await?;
    }
    let Some(view) = view(&mut *tx, id).await? else {
        return Ok(Err(Refusal::NoBooking(id)));
    };
    let kind = if status == "cancelled" {
        "booking.cancelled"
    } else {
        "booking.completed"
    };
    announce(&mut tx, kind, format!("{kind}:{id}"), &view).await?;
    tx.commit().await?;
    Ok(Ok(view))
}

/// Pairs of live bookings that overlap on a bay or a technician (must always be empty).
pub async fn overlaps(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM bookings a JOIN bookings b ON a.id < b.id
         WHERE a.status <> 'cancelled' AND b.status <> 'cancelled' AND a.during && b.during
           AND (a.bay_id = b.bay_id OR a.technician_id = b.technician_id)",
    )
    .fetch_one(pool)
    .await?)
}
