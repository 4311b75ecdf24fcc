//! `/v1/workshops`, `/v1/jobs`, `/v1/parts` (scope planner): workshop, bay, technician, stock
//! and job catalogue management, and the slot search.

use super::input::{body, limit, next_cursor, query, Page};
use super::vehicles::parse_time;
use super::{error::ApiError, AppState};
use crate::capacity::slots::{self, Search};
use crate::capacity::{
    BaySpec, CapacityError, JobSpec, PartSpec, StockSpec, TechnicianSpec, WorkshopSpec,
};
use crate::store::capacity::{self as cap, Change, SnapshotMissing};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

impl From<CapacityError> for ApiError {
    fn from(e: CapacityError) -> ApiError {
        ApiError::bad_request("invalid_body", e.to_string())
    }
}

fn same_code(what: &str, path: &str, body: &str) -> Result<(), ApiError> {
    if path == body {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_body",
            format!("{what} code {body:?} in the body differs from {path:?} in the path"),
        ))
    }
}

async fn workshop_id(state: &AppState, code: &str) -> Result<i32, ApiError> {
    cap::workshop_by_code(state.store.pool(), code)
        .await?
        .map(|w| w.id)
        .ok_or_else(|| ApiError::NotFound(format!("no workshop {code}")))
}

pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = query(params)?;
    let n = p.size()?;
    let rows = cap::list_workshops(state.store.pool(), p.cursor.as_deref(), n).await?;
    let next = next_cursor(&rows, n, |w| w.code.clone());
    Ok(Json(json!({"workshops": rows, "next_cursor": next})))
}

pub async fn get(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Json<WorkshopSpec>, ApiError> {
    cap::workshop_spec(state.store.pool(), &code)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no workshop {code}")))
}

/// Creates or replaces a workshop with its calendar, bays, technicians and stock.
pub async fn put(
    State(state): State<AppState>,
    Path(code): Path<String>,
    spec: Result<Json<WorkshopSpec>, JsonRejection>,
) -> Result<Json<WorkshopSpec>, ApiError> {
    let spec = body(spec)?;
    same_code("workshop", &code, &spec.code)?;
    spec.validate()?;
    let unknown = cap::unknown_parts(
        state.store.pool(),
        &spec
            .stock
            .iter()
            .map(|s| crate::capacity::JobPart {
                sku: s.sku.clone(),
                quantity: 1,
            })
            .collect::<Vec<_>>(),
    )
    .await?;
    if !unknown.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("stock names unknown parts: {}", unknown.join(", ")),
        ));
    }
    cap::apply(state.store.pool(), Change::Workshop(&spec)).await?;
    get(State(state), Path(code)).await
}

pub async fn put_bay(
    State(state): State<AppState>,
    Path((code, bay)): Path<(String, String)>,
    spec: Result<Json<BaySpec>, JsonRejection>,
) -> Result<Json<BaySpec>, ApiError> {
    let spec = body(spec)?;
    same_code("bay", &bay, &spec.code)?;
    spec.validate()?;
    let id = workshop_id(&state, &code).await?;
    cap::apply(state.store.pool(), Change::Bay(id, &spec)).await?;
    Ok(Json(spec))
}

pub async fn put_technician(
    State(state): State<AppState>,
    Path((code, tech)): Path<(String, String)>,
    spec: Result<Json<TechnicianSpec>, JsonRejection>,
) -> Result<Json<TechnicianSpec>, ApiError> {
    let spec = body(spec)?;
    same_code("technician", &tech, &spec.code)?;
    spec.validate()?;
    let id = workshop_id(&state, &code).await?;
    cap::apply(state.store.pool(), Change::Technician(id, &spec)).await?;
    Ok(Json(spec))
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StockBody {
    on_hand: i32,
    lead_time_days: i32,
}

pub async fn put_stock(
    State(state): State<AppState>,
    Path((code, sku)): Path<(String, String)>,
    spec: Result<Json<StockBody>, JsonRejection>,
) -> Result<Json<StockSpec>, ApiError> {
    let b = body(spec)?;
    if b.on_hand < 0 || !(0..=365).contains(&b.lead_time_days) {
        return Err(ApiError::bad_request(
            "invalid_body",
            "on_hand must be >= 0 and lead_time_days 0..365",
        ));
    }
    let id = workshop_id(&state, &code).await?;
    let stock = StockSpec {
        sku: sku.clone(),
        on_hand: b.on_hand,
        lead_time_days: b.lead_time_days,
    };
    let pool = state.store.pool();
    let unknown =
        cap::unknown_parts(pool, &[crate::capacity::JobPart { sku, quantity: 1 }]).await?;
    if !unknown.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no part {}",
            unknown.join(", ")
        )));
    }
    cap::apply(pool, Change::Stock(id, &stock)).await?;
    Ok(Json(stock))
}

pub async fn list_jobs(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"jobs": cap::list_jobs(state.store.pool()).await?}),
    ))
}

pub async fn put_job(
    State(state): State<AppState>,
    Path(code): Path<String>,
    spec: Result<Json<JobSpec>, JsonRejection>,
) -> Result<Json<JobSpec>, ApiError> {
    let spec = body(spec)?;
    same_code("job", &code, &spec.code)?;
    spec.validate()?;
    let unknown = cap::unknown_parts(state.store.pool(), &spec.parts).await?;
    if !unknown.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("job names unknown parts: {}", unknown.join(", ")),
        ));
    }
    cap::apply(state.store.pool(), Change::Job(&spec)).await?;
    Ok(Json(spec))
}

pub async fn put_part(
    State(state): State<AppState>,
    Path(sku): Path<String>,
    spec: Result<Json<PartSpec>, JsonRejection>,
) -> Result<Json<PartSpec>, ApiError> {
    let spec = body(spec)?;
    same_code("part", &sku, &spec.sku)?;
    spec.validate()?;
    cap::apply(state.store.pool(), Change::Part(&spec)).await?;
    Ok(Json(spec))
}

#[derive(Debug, Deserialize)]
pub struct SlotParams {
    job: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

/// The longest period one slot search may cover.
pub const MAX_SEARCH_DAYS: i64 = 62;

pub fn missing(e: SnapshotMissing) -> ApiError {
    match e {
        SnapshotMissing::Workshop(_) => ApiError::NotFound(e.to_string()),
        SnapshotMissing::Job(_) => ApiError::bad_request("invalid_parameter", e.to_string()),
    }
}

/// `GET /v1/workshops/{id}/slots?job=&from=&to=&limit=`: feasible windows, best first.
pub async fn slots(
    State(state): State<AppState>,
    Path(code): Path<String>,
    params: Result<Query<SlotParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = query(params)?;
    let job = p.job.filter(|j| !j.is_empty()).ok_or_else(|| {
        ApiError::bad_request("invalid_parameter", "job is required (a job code)")
    })?;
    let now = Utc::now();
    let from = parse_time("from", p.from.as_deref())?.unwrap_or(now);
    let to = parse_time("to", p.to.as_deref())?.unwrap_or(from + Duration::days(14));
    check_period(from, to)?;
    let n = limit(p.limit.as_deref(), 50, 1000)?;
    let snap = cap::snapshot(state.store.pool(), &code, &job, from, to)
        .await?
        .map_err(missing)?;
    let earliest = snap.parts_ready_at(now).max(now);
    let ranked = slots::search(
        &snap.capacity,
        &snap.need(),
        &Search {
            from,
            to,
            earliest,
            ignore_booking: None,
        },
    );
    let windows: Vec<Value> = ranked
        .iter()
        .take(n as usize)
        .map(|w| snap.window_json(w))
        .collect();
    Ok(Json(json!({
        "workshop": snap.workshop.code,
        "time_zone": snap.workshop.time_zone,
        "job": snap.job,
        "duration_minutes": snap.job.labour_minutes,
        "estimated_cost_cents": snap.estimated_cost_cents(),
        "parts_ready_at": earliest,
        "parts": snap.parts,
        "feasible": ranked.len(),
        "windows": windows,
    })))
}

pub fn check_period(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), ApiError> {
    if from >= to {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "from must be before to",
        ));
    }
    if to - from > Duration::days(MAX_SEARCH_DAYS) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("from..to may span at most {MAX_SEARCH_DAYS} days"),
        ));
    }
    Ok(())
}
