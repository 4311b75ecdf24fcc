//! `/v1/bookings` (scope advisor): bookings with their work orders; rescheduling, cancelling
//! and completing a visit. A window that is gone is a 409 with alternatives.

use super::doc::Unavailable;
use super::error::{ApiError, ErrorBody};
use super::input::parse_time;
use super::input::{body, id_cursor, next_cursor, query, Page};
use super::offers::parse_id;
use super::AppState;
use crate::booking::{self, BookingError};
use crate::store::booking::{self as bookings, BookingView, Refusal};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

impl From<BookingError> for ApiError {
    fn from(e: BookingError) -> ApiError {
        match e {
            BookingError::Store(e) => ApiError::Internal(e),
            BookingError::Unavailable {
                reason,
                alternatives,
            } => {
                let code = match reason {
                    Refusal::Taken => "window_taken",
                    _ => "window_unavailable",
                };
                let mut extra = serde_json::Map::new();
                let alternatives = serde_json::to_value(alternatives).unwrap_or(Value::Null);
                extra.insert("alternatives".into(), alternatives);
                ApiError::Conflict {
                    code,
                    message: reason.to_string(),
                    extra,
                }
            }
            BookingError::Refused(r) => match r {
                Refusal::NoOffer(_) | Refusal::NoBooking(_) => ApiError::NotFound(r.to_string()),
                Refusal::Missing(m) => ApiError::bad_request("invalid_body", m.to_string()),
                Refusal::Illegal(_) => ApiError::conflict("illegal_transition", r.to_string()),
                Refusal::NotLive(..) => ApiError::conflict("not_booked", r.to_string()),
                Refusal::Infeasible(_) | Refusal::Taken => {
                    ApiError::conflict("window_unavailable", r.to_string())
                }
            },
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BookingParams {
    /// booked, cancelled or completed
    status: Option<String>,
    /// Workshop code
    workshop: Option<String>,
    /// With `to`: bookings overlapping [from, to), RFC 3339
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// With `from`, RFC 3339
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    page: Page,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Bookings {
    pub bookings: Vec<BookingView>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// Bookings, newest first, cursor-paged
#[utoipa::path(
    get, path = "/v1/bookings", tag = "bookings", operation_id = "listBookings",
    params(BookingParams, Page),
    responses(
        (status = 200, description = "One page of bookings", body = Bookings),
        (status = 400, description = "A bad parameter or cursor", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<BookingParams>, QueryRejection>,
) -> Result<Json<Bookings>, ApiError> {
    let p = query(params)?;
    let status = p.status.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = status {
        if !["booked", "cancelled", "completed"].contains(&s) {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("status={s:?}: expected booked, cancelled or completed"),
            ));
        }
    }
    let n = p.page.size()?;
    let before = id_cursor(p.page.cursor.as_deref())?;
    let from = parse_time("from", p.from.as_deref())?;
    let to = parse_time("to", p.to.as_deref())?;
    let during = match (from, to) {
        (None, None) => None,
        (Some(f), Some(t)) if f < t => Some((f, t)),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "from must be before to",
            ))
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "from and to go together",
            ))
        }
    };
    let filter = bookings::BookingFilter {
        status,
        workshop: p.workshop.as_deref().filter(|s| !s.is_empty()),
        during,
    };
    let rows = bookings::list(state.store.pool(), filter, before, n).await?;
    let next = next_cursor(&rows, n, |b| b.id.to_string());
    Ok(Json(Bookings {
        bookings: rows,
        next_cursor: next,
    }))
}

/// One booking with its work order
#[utoipa::path(
    get, path = "/v1/bookings/{id}", tag = "bookings", operation_id = "getBooking",
    params(("id" = i64, Path, description = "Booking id", minimum = 1)),
    responses(
        (status = 200, description = "The booking", body = BookingView),
        (status = 400, description = "Not a booking id", body = ErrorBody),
        (status = 404, description = "No such booking", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BookingView>, ApiError> {
    let id = parse_id("booking", &id)?;
    bookings::view(state.store.pool(), id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no booking {id}")))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTime {
    /// The new start (RFC 3339) at the booking's workshop.
    start: DateTime<Utc>,
}

/// Move a booking to another start at its workshop
#[utoipa::path(
    post, path = "/v1/bookings/{id}/reschedule", tag = "bookings", operation_id = "rescheduleBooking",
    params(("id" = i64, Path, description = "Booking id", minimum = 1)),
    request_body = NewTime,
    responses(
        (status = 200, description = "The booking", body = BookingView),
        (status = 400, description = "Not a booking id, or a bad body", body = ErrorBody),
        (status = 404, description = "No such booking", body = ErrorBody),
        (status = 409, description = "Window taken or unavailable, with alternatives; or the booking is not live", body = Unavailable),
    )
)]
pub async fn reschedule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    t: Result<Json<NewTime>, JsonRejection>,
) -> Result<Json<BookingView>, ApiError> {
    let id = parse_id("booking", &id)?;
    let t = body(t)?;
    Ok(Json(
        booking::reschedule(state.store.pool(), id, t.start).await?,
    ))
}

/// Cancel a booking; its offer is open again
#[utoipa::path(
    post, path = "/v1/bookings/{id}/cancel", tag = "bookings", operation_id = "cancelBooking",
    params(("id" = i64, Path, description = "Booking id", minimum = 1)),
    responses(
        (status = 200, description = "The cancelled booking", body = BookingView),
        (status = 400, description = "Not a booking id", body = ErrorBody),
        (status = 404, description = "No such booking", body = ErrorBody),
        (status = 409, description = "The booking is not live (`not_booked`)", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BookingView>, ApiError> {
    let id = parse_id("booking", &id)?;
    Ok(Json(booking::cancel(state.store.pool(), id).await?))
}

#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    /// preventive (default) or repair.
    #[schema(value_type = Option<String>, pattern = "^(preventive|repair)$", default = "preventive")]
    kind: Option<String>,
}

/// The job was done: writes the service record (source aftercare) the model learns from
///
/// The body is optional: without one (no JSON content type), the job counts as preventive.
#[utoipa::path(
    post, path = "/v1/bookings/{id}/complete", tag = "bookings", operation_id = "completeBooking",
    params(("id" = i64, Path, description = "Booking id", minimum = 1)),
    request_body(content = Option<Completion>, description = "Optional; default `{\"kind\": \"preventive\"}`"),
    responses(
        (status = 200, description = "The completed booking", body = BookingView),
        (status = 400, description = "Not a booking id, or a bad body", body = ErrorBody),
        (status = 404, description = "No such booking", body = ErrorBody),
        (status = 409, description = "The booking is not live (`not_booked`)", body = ErrorBody),
    )
)]
pub async fn complete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    c: Result<Json<Completion>, JsonRejection>,
) -> Result<Json<BookingView>, ApiError> {
    let id = parse_id("booking", &id)?;
    let c = match c {
        Err(JsonRejection::MissingJsonContentType(_)) => Completion::default(),
        other => body(other)?,
    };
    let kind = c.kind.unwrap_or_else(|| "preventive".into());
    if kind != "preventive" && kind != "repair" {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("kind {kind:?}: expected preventive or repair"),
        ));
    }
    let b = booking::complete(state.store.pool(), id, &kind).await?;
    state.metrics.offer_entered("completed");
    Ok(Json(b))
}
