//! `/v1/offers` and `/v1/bookings` (scope advisor): the booking queue. Accepting a window
//! books it atomically; a window that is gone is a 409 with alternatives.

use super::input::{body, id_cursor, next_cursor, query, Page};
use super::vehicles::parse_time;
use super::{error::ApiError, AppState};
use crate::booking::{self, BookingError};
use crate::offers::state::OfferState;
use crate::store::booking::{self as bookings, BookingView, Refusal};
use crate::store::offers::{self as store, OfferView};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

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
                extra.insert("alternatives".into(), Value::Array(alternatives));
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

fn parse_id(what: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("{what} id {raw:?} is not a positive integer"),
        )
    })
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    state: Option<String>,
    vin: Option<String>,
    #[serde(flatten)]
    page: Page,
}

/// `GET /v1/offers?state=&vin=&cursor=&limit=`: in id order, cursor-paged.
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = query(params)?;
    let st = p
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<OfferState>())
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()))?;
    let n = p.page.size()?;
    let after = id_cursor(p.page.cursor.as_deref())?;
    let vin = p.vin.as_deref().filter(|s| !s.is_empty());
    let rows = store::list(state.store.pool(), st, vin, after, n).await?;
    let next = next_cursor(&rows, n, |o| o.id.to_string());
    Ok(Json(json!({"offers": rows, "next_cursor": next})))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OfferView>, ApiError> {
    let id = parse_id("offer", &id)?;
    store::get(state.store.pool(), id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no offer {id}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// The window's start (RFC 3339), one of the offer's windows or any other open one.
    start: DateTime<Utc>,
    /// A nearby workshop the offer proposed; default the offer's own.
    workshop: Option<String>,
}

/// `POST /v1/offers/{id}/accept` with `{"start": "...", "workshop": "WS-02"?}`.
pub async fn accept(
    State(state): State<AppState>,
    Path(id): Path<String>,
    choice: Result<Json<Choice>, JsonRejection>,
) -> Result<Json<BookingView>, ApiError> {
    let id = parse_id("offer", &id)?;
    let c = body(choice)?;
    let b = booking::accept(state.store.pool(), id, c.workshop.as_deref(), c.start).await?;
    state.metrics.offer_entered("booked");
    Ok(Json(b))
}

/// `POST /v1/offers/{id}/decline`.
pub async fn decline(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OfferView>, ApiError> {
    let id = parse_id("offer", &id)?;
    match store::decline(state.store.pool(), id).await? {
        None => Err(ApiError::NotFound(format!("no offer {id}"))),
        Some(Err(e)) => Err(ApiError::conflict("illegal_transition", e.to_string())),
        Some(Ok(v)) => {
            state.metrics.offer_entered("declined");
            Ok(Json(v))
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct BookingParams {
    status: Option<String>,
    workshop: Option<String>,
    from: Option<String>,
    to: Option<String>,
    #[serde(flatten)]
    page: Page,
}

/// `GET /v1/bookings?status=&workshop=&from=&to=&cursor=&limit=`: newest first, cursor-paged.
pub async fn list_bookings(
    State(state): State<AppState>,
    params: Result<Query<BookingParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({"bookings": rows, "next_cursor": next})))
}

pub async fn get_booking(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BookingView>, ApiError> {
    let id = parse_id("booking", &id)?;
    bookings::view(state.store.pool(), id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no booking {id}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTime {
    start: DateTime<Utc>,
}

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

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BookingView>, ApiError> {
    let id = parse_id("booking", &id)?;
    Ok(Json(booking::cancel(state.store.pool(), id).await?))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    /// preventive (default) or repair.
    kind: Option<String>,
}

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
