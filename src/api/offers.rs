//! `/v1/offers` (scope advisor): the booking queue. Accepting a window books it atomically
//! (`bookings` serves the bookings); a window that is gone is a 409 with alternatives.

use super::doc::Unavailable;
use super::error::{ApiError, ErrorBody};
use super::input::{body, id_cursor, next_cursor, query, Page};
use super::AppState;
use crate::booking;
use crate::component::Component;
use crate::store::booking::BookingView;
use crate::store::offers::{self as store, JobDeclined, JobRefusal, OfferView};
use crate::visit::OfferState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub(super) fn parse_id(what: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("{what} id {raw:?} is not a positive integer"),
        )
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// proposed, notified, booked, declined, expired or completed
    #[param(value_type = Option<OfferState>)]
    state: Option<String>,
    /// One vehicle's offers
    vin: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    page: Page,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Offers {
    pub offers: Vec<OfferView>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// The booking queue, in id order, cursor-paged
#[utoipa::path(
    get, path = "/v1/offers", tag = "offers", operation_id = "listOffers",
    params(ListParams, Page),
    responses(
        (status = 200, description = "One page of offers", body = Offers),
        (status = 400, description = "A bad parameter or cursor", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Offers>, ApiError> {
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
    Ok(Json(Offers {
        offers: rows,
        next_cursor: next,
    }))
}

/// One offer
#[utoipa::path(
    get, path = "/v1/offers/{id}", tag = "offers", operation_id = "getOffer",
    params(("id" = i64, Path, description = "Offer id", minimum = 1)),
    responses(
        (status = 200, description = "Offer", body = OfferView),
        (status = 400, description = "Not an offer id", body = ErrorBody),
        (status = 404, description = "No such offer", body = ErrorBody),
    )
)]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// The window's start (RFC 3339), one of the offer's windows or any other open one.
    start: DateTime<Utc>,
    /// A nearby workshop the offer proposed; default the offer's own.
    workshop: Option<String>,
}

/// Accept a window: books a bay and a technician atomically and creates the work order
#[utoipa::path(
    post, path = "/v1/offers/{id}/accept", tag = "offers", operation_id = "acceptOffer",
    params(("id" = i64, Path, description = "Offer id", minimum = 1)),
    request_body = Choice,
    responses(
        (status = 200, description = "The booking", body = BookingView),
        (status = 400, description = "Not an offer id, or a bad body", body = ErrorBody),
        (status = 404, description = "No such offer", body = ErrorBody),
        (status = 409, description = "Window taken (`window_taken`) or unavailable (`window_unavailable`), with alternatives; or an illegal state transition", body = Unavailable),
    )
)]
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

/// Decline an offer (a cooldown follows before the next one)
#[utoipa::path(
    post, path = "/v1/offers/{id}/decline", tag = "offers", operation_id = "declineOffer",
    params(("id" = i64, Path, description = "Offer id", minimum = 1)),
    responses(
        (status = 200, description = "The offer", body = OfferView),
        (status = 400, description = "Not an offer id", body = ErrorBody),
        (status = 404, description = "No such offer", body = ErrorBody),
        (status = 409, description = "The offer can no longer be declined (`illegal_transition`)", body = ErrorBody),
    )
)]
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

/// Decline one job of an offer's visit; the other jobs stay one visit
///
/// The remaining jobs' labour and price are worked out again without it (a set-up step it
/// did for them is theirs again) and the windows shortened to the new length; the first job
/// that remains leads. Declining the last job declines the offer (a cooldown follows, per
/// component, as for a declined offer).
#[utoipa::path(
    post, path = "/v1/offers/{id}/jobs/{component}/decline", tag = "offers", operation_id = "declineOfferJob",
    params(
        ("id" = i64, Path, description = "Offer id", minimum = 1),
        ("component" = Component, Path, description = "The component of the job to decline"),
    ),
    responses(
        (status = 200, description = "The offer without the job, or declined when it was the last", body = OfferView),
        (status = 400, description = "Not an offer id or not a component", body = ErrorBody),
        (status = 404, description = "No such offer, or no job for the component in it", body = ErrorBody),
        (status = 409, description = "The offer can no longer be declined (`illegal_transition`), or the job already was (`job_declined`)", body = ErrorBody),
    )
)]
pub async fn decline_job(
    State(state): State<AppState>,
    Path((id, component)): Path<(String, String)>,
) -> Result<Json<OfferView>, ApiError> {
    let id = parse_id("offer", &id)?;
    let component: Component =
        component
            .parse()
            .map_err(|e: crate::component::UnknownComponent| {
                ApiError::bad_request("invalid_parameter", e.to_string())
            })?;
    match store::decline_job(state.store.pool(), id, component.as_str()).await? {
        Ok((v, declined)) => {
            if declined == JobDeclined::Offer {
                state.metrics.offer_entered("declined");
            }
            Ok(Json(v))
        }
        Err(r @ (JobRefusal::NoOffer(_) | JobRefusal::NoJob(..))) => {
            Err(ApiError::NotFound(r.to_string()))
        }
        Err(r @ JobRefusal::AlreadyDeclined(..)) => {
            Err(ApiError::conflict("job_declined", r.to_string()))
        }
        Err(r @ JobRefusal::Illegal(_)) => {
            Err(ApiError::conflict("illegal_transition", r.to_string()))
        }
        Err(r @ JobRefusal::Missing(_)) => Err(ApiError::Internal(
            crate::store::StoreError::Corrupt(r.to_string()),
        )),
    }
}
