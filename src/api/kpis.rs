//! `GET /v1/kpis?from=&to=` (scope planner): service KPIs for a period (default the last
//! 30 days).

use super::input::query;
use super::vehicles::parse_time;
use super::{error::ApiError, AppState};
use crate::store::kpis::{self, Kpis};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{Duration, Utc};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Params {
    from: Option<String>,
    to: Option<String>,
}

pub async fn get(
    State(state): State<AppState>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Kpis>, ApiError> {
    let p = query(params)?;
    let to = parse_time("to", p.to.as_deref())?.unwrap_or_else(Utc::now);
    let from = parse_time("from", p.from.as_deref())?.unwrap_or(to - Duration::days(30));
    if from >= to || to - from > Duration::days(366) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "from must be before to, at most 366 days apart",
        ));
    }
    Ok(Json(kpis::compute(state.store.pool(), from, to).await?))
}
