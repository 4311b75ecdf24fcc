//! `GET /v1/kpis?from=&to=` (scope planner): service KPIs for a period (default the last
//! 30 days).

use super::error::{ApiError, ErrorBody};
use super::input::{next_cursor, parse_time, query, Page};
use super::AppState;
use crate::store::kpis::{self, Kpis};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// RFC 3339; default `to` - 30 days
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// RFC 3339; default now; at most 366 days after `from`
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    page: Page,
}

/// The KPIs, with bay utilisation for one page of workshops.
#[derive(Debug, Serialize, ToSchema)]
pub struct KpiPage {
    #[serde(flatten)]
    pub kpis: Kpis,
    /// Pass as `cursor` for the next page of `bay_utilisation`; null on the last one.
    pub next_cursor: Option<String>,
}

/// Service KPIs for a period
///
/// risk_to_offer (seconds from the score that crossed the threshold to the offer), conversion
/// (offers booked; an offer is one visit, and `jobs` counts the jobs in them), visits (share
/// of non-routine visits booked by Aftercare; a vehicle's records at one workshop on one day
/// are one visit, each record one job), bay_utilisation per workshop, fault_hotspots (repairs
/// per vehicle by make, model and component), owners_without_visit_90d (at most 50 of them
/// sampled). `bay_utilisation` holds `limit` workshops by code (the fault hotspots are the top
/// 20), cursor-paged.
#[utoipa::path(
    get, path = "/v1/kpis", tag = "planning", operation_id = "getKpis",
    params(Params, Page),
    responses(
        (status = 200, description = "The KPIs of the period", body = KpiPage),
        (status = 400, description = "A bad parameter or period", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<KpiPage>, ApiError> {
    let p = query(params)?;
    let to = parse_time("to", p.to.as_deref())?.unwrap_or_else(Utc::now);
    let from = parse_time("from", p.from.as_deref())?.unwrap_or(to - Duration::days(30));
    if from >= to || to - from > Duration::days(366) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "from must be before to, at most 366 days apart",
        ));
    }
    let n = p.page.size()?;
    let kpis = kpis::compute(state.store.pool(), from, to, p.page.cursor.as_deref(), n).await?;
    let next_cursor = next_cursor(&kpis.bay_utilisation, n, |u| u.workshop.clone());
    Ok(Json(KpiPage { kpis, next_cursor }))
}
