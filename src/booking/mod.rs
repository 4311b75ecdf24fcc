//! Booking: accepting an offer's window (one visit, however many jobs), rescheduling,
//! cancelling and completing visits.
//! The transactions live in `store::booking` (the database's exclusion constraints keep
//! bookings apart); this module retries what is transient and, when a window is gone,
//! finds alternatives to offer instead.

use crate::capacity::{Choose, Window};
use crate::store::booking::{self as store, BookingView, Refusal};
use crate::store::capacity as cap;
use crate::store::StoreError;
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;

/// Alternatives offered with a refusal.
pub const ALTERNATIVES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error(transparent)]
    Refused(Refusal),
    /// The window is gone or was never open; `alternatives` are open ones nearby.
    #[error("{reason}")]
    Unavailable {
        reason: Refusal,
        alternatives: Vec<Window>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs `f` again (up to three times) when the database reports a deadlock or a
/// serialization failure.
async fn retrying<F, Fut>(mut f: F) -> Result<Result<BookingView, Refusal>, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<BookingView, Refusal>, StoreError>>,
{
    let mut tries = 0;
    loop {
        match f().await {
            Err(e) if e.is_transient() && tries < 3 => tries += 1,
            other => return other,
        }
    }
}

/// Open windows for the visit's `jobs` at `workshop` from around `near` (a day before) for
/// two weeks.
pub async fn alternatives(
    pool: &PgPool,
    workshop: &str,
    jobs: &[&str],
    near: DateTime<Utc>,
    now: DateTime<Utc>,
    ignore: Option<i64>,
) -> Result<Vec<Window>, StoreError> {
    let from = (near - Duration::days(1)).max(now);
    let to = from + Duration::days(14);
    let Ok(plan) = cap::plan(pool, workshop, jobs, from, to).await? else {
        return Ok(Vec::new());
    };
    Ok(plan
        .windows(from, to, now, ignore, Choose::SpreadOverDays(ALTERNATIVES))
        .windows)
}

async fn settle(
    pool: &PgPool,
    result: Result<BookingView, Refusal>,
    workshop: &str,
    jobs: &[&str],
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    ignore: Option<i64>,
) -> Result<BookingView, BookingError> {
    match result {
        Ok(b) => Ok(b),
        Err(reason @ (Refusal::Taken | Refusal::Infeasible(_))) => Err(BookingError::Unavailable {
            alternatives: alternatives(pool, workshop, jobs, start, now, ignore).await?,
            reason,
        }),
        Err(r) => Err(BookingError::Refused(r)),
    }
}

/// Accepts an offer's window (at its workshop, or `workshop` when the offer proposed a
/// nearby one).
pub async fn accept(
    pool: &PgPool,
    offer_id: i64,
    workshop: Option<&str>,
    start: DateTime<Utc>,
) -> Result<BookingView, BookingError> {
    let now = Utc::now();
    let result = retrying(|| store::accept(pool, offer_id, workshop, start, now)).await?;
    if matches!(result, Err(Refusal::Taken | Refusal::Infeasible(_))) {
        if let Some(o) = crate::store::offers::get(pool, offer_id).await? {
            let ws = workshop.unwrap_or(&o.workshop).to_owned();
            let jobs: Vec<&str> = o
                .jobs
                .iter()
                .filter(|j| j.declined_at.is_none())
                .map(|j| j.job.as_str())
                .collect();
            return settle(pool, result, &ws, &jobs, start, now, None).await;
        }
    }
    result.map_err(BookingError::Refused)
}

pub async fn reschedule(
    pool: &PgPool,
    id: i64,
    start: DateTime<Utc>,
) -> Result<BookingView, BookingError> {
    let now = Utc::now();
    let result = retrying(|| store::reschedule(pool, id, start, now)).await?;
    if matches!(result, Err(Refusal::Taken | Refusal::Infeasible(_))) {
        if let Some(b) = store::view(pool, id).await? {
            let jobs: Vec<&str> = b.jobs.iter().map(|j| j.job.as_str()).collect();
            return settle(pool, result, &b.workshop, &jobs, start, now, Some(id)).await;
        }
    }
    result.map_err(BookingError::Refused)
}

pub async fn cancel(pool: &PgPool, id: i64) -> Result<BookingView, BookingError> {
    retrying(|| store::cancel(pool, id))
        .await?
        .map_err(BookingError::Refused)
}

/// `kind`: preventive (found and fixed early, the default) or repair.
pub async fn complete(pool: &PgPool, id: i64, kind: &str) -> Result<BookingView, BookingError> {
    retrying(|| store::complete(pool, id, kind))
        .await?
        .map_err(BookingError::Refused)
}
