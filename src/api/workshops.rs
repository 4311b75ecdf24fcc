//! `/v1/workshops`, `/v1/jobs`, `/v1/parts` (scope planner): workshop, bay, technician, stock
//! and job catalogue management, and the slot search.

use super::error::{ApiError, ErrorBody};
use super::input::{body, limit, next_cursor, parse_time, query, Page};
use super::AppState;
use crate::capacity::{
    BaySpec, CapacityError, Choose, JobSpec, PartNeed, PartSpec, PlanMissing, StockSpec,
    TechnicianSpec, Window, WorkshopRef, WorkshopSpec,
};
use crate::store::capacity::{self as cap, Change};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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

#[derive(Debug, Serialize, ToSchema)]
pub struct Workshops {
    pub workshops: Vec<WorkshopRef>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// Workshops by code, cursor-paged
#[utoipa::path(
    get, path = "/v1/workshops", tag = "workshops", operation_id = "listWorkshops",
    params(Page),
    responses(
        (status = 200, description = "One page of workshops", body = Workshops),
        (status = 400, description = "A bad parameter", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Workshops>, ApiError> {
    let p = query(params)?;
    let n = p.size()?;
    let rows = cap::list_workshops(state.store.pool(), p.cursor.as_deref(), n).await?;
    let next = next_cursor(&rows, n, |w| w.code.clone());
    Ok(Json(Workshops {
        workshops: rows,
        next_cursor: next,
    }))
}

/// A workshop: calendar, bays, technicians with rosters, stock
#[utoipa::path(
    get, path = "/v1/workshops/{id}", tag = "workshops", operation_id = "getWorkshop",
    params(("id" = String, Path, description = "Workshop code, e.g. WS-01")),
    responses(
        (status = 200, description = "Workshop", body = WorkshopSpec),
        (status = 404, description = "No such workshop", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Json<WorkshopSpec>, ApiError> {
    cap::workshop_spec(state.store.pool(), &code)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no workshop {code}")))
}

/// Create or replace a workshop
///
/// Replaces calendar, bays and technicians (those no longer listed are deactivated) and stock.
#[utoipa::path(
    put, path = "/v1/workshops/{id}", tag = "workshops", operation_id = "putWorkshop",
    params(("id" = String, Path, description = "Workshop code, e.g. WS-01")),
    request_body = WorkshopSpec,
    responses(
        (status = 200, description = "The stored workshop", body = WorkshopSpec),
        (status = 400, description = "A bad body: invalid JSON or field, a code that differs from the path's, unknown parts", body = ErrorBody),
        (status = 404, description = "No such workshop", body = ErrorBody),
    )
)]
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

/// Create or replace a bay
#[utoipa::path(
    put, path = "/v1/workshops/{id}/bays/{bay}", tag = "workshops", operation_id = "putBay",
    params(("id" = String, Path, description = "Workshop code, e.g. WS-01"), ("bay" = String, Path, description = "Bay code")),
    request_body = BaySpec,
    responses(
        (status = 200, description = "The stored bay", body = BaySpec),
        (status = 400, description = "A bad body, or a code that differs from the path's", body = ErrorBody),
        (status = 404, description = "No such workshop", body = ErrorBody),
    )
)]
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

/// Create or replace a technician with skills and weekly shifts
#[utoipa::path(
    put, path = "/v1/workshops/{id}/technicians/{technician}", tag = "workshops", operation_id = "putTechnician",
    params(("id" = String, Path, description = "Workshop code, e.g. WS-01"), ("technician" = String, Path, description = "Technician code")),
    request_body = TechnicianSpec,
    responses(
        (status = 200, description = "The stored technician", body = TechnicianSpec),
        (status = 400, description = "A bad body, or a code that differs from the path's", body = ErrorBody),
        (status = 404, description = "No such workshop", body = ErrorBody),
    )
)]
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

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Stock)]
pub struct StockBody {
    #[schema(minimum = 0)]
    on_hand: i32,
    #[schema(minimum = 0, maximum = 365)]
    lead_time_days: i32,
}

/// Set a part's stock and lead time at a workshop
#[utoipa::path(
    put, path = "/v1/workshops/{id}/stock/{sku}", tag = "workshops", operation_id = "putStock",
    params(("id" = String, Path, description = "Workshop code, e.g. WS-01"), ("sku" = String, Path, description = "Part number")),
    request_body = StockBody,
    responses(
        (status = 200, description = "The stored stock line", body = StockSpec),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 404, description = "No such workshop or part", body = ErrorBody),
    )
)]
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

#[derive(Debug, Serialize, ToSchema)]
pub struct Jobs {
    pub jobs: Vec<JobSpec>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// The job catalogue with parts, by code, cursor-paged
#[utoipa::path(
    get, path = "/v1/jobs", tag = "catalogue", operation_id = "listJobs",
    params(Page),
    responses(
        (status = 200, description = "One page of jobs, by code", body = Jobs),
        (status = 400, description = "A bad parameter", body = ErrorBody),
    )
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    params: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Jobs>, ApiError> {
    let p = query(params)?;
    let n = p.size()?;
    let rows = cap::list_jobs(state.store.pool(), p.cursor.as_deref(), n).await?;
    let next = next_cursor(&rows, n, |j| j.code.clone());
    Ok(Json(Jobs {
        jobs: rows,
        next_cursor: next,
    }))
}

/// Create or replace a job
#[utoipa::path(
    put, path = "/v1/jobs/{code}", tag = "catalogue", operation_id = "putJob",
    params(("code" = String, Path, description = "Job code, e.g. brake_pads_front", pattern = "^[a-z0-9_]{1,64}$")),
    request_body = JobSpec,
    responses(
        (status = 200, description = "The stored job", body = JobSpec),
        (status = 400, description = "A bad body, a code that differs from the path's, or unknown parts", body = ErrorBody),
    )
)]
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

/// Create or replace a part
#[utoipa::path(
    put, path = "/v1/parts/{sku}", tag = "catalogue", operation_id = "putPart",
    params(("sku" = String, Path, description = "Part number")),
    request_body = PartSpec,
    responses(
        (status = 200, description = "The stored part", body = PartSpec),
        (status = 400, description = "A bad body, or a SKU that differs from the path's", body = ErrorBody),
    )
)]
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SlotParams {
    /// Job code (required)
    #[param(required = true, value_type = String)]
    job: Option<String>,
    /// RFC 3339; default now
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// RFC 3339; default `from` + 14 days; at most 62 days after `from`
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
    /// 1 to 1000, default 50
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Slots {
    pub workshop: String,
    /// The workshop's IANA time zone.
    pub time_zone: String,
    pub job: JobSpec,
    pub duration_minutes: i32,
    /// Labour and parts.
    pub estimated_cost_cents: i64,
    /// When the parts can be there: now if stock covers them, else after the longest lead time.
    pub parts_ready_at: DateTime<Utc>,
    pub parts: Vec<PartNeed>,
    /// How many windows are feasible in the period.
    pub feasible: usize,
    /// The best `limit` of them.
    pub windows: Vec<Window>,
}

/// The longest period one slot search may cover.
pub const MAX_SEARCH_DAYS: i64 = 62;

pub fn missing(e: PlanMissing) -> ApiError {
    match e {
        PlanMissing::Workshop(_) => ApiError::NotFound(e.to_string()),
        PlanMissing::Job(_) => ApiError::bad_request("invalid_parameter", e.to_string()),
    }
}

/// Feasible windows for a job, best first
///
/// `feasible` counts every window; `windows` holds the best `limit`. A window has a bay with
/// the capability and a technician with the skill both free, inside shifts and opening hours,
/// not on holidays, not before the parts can arrive; windows are ranked to spread load across
/// the week. Local times are the workshop's IANA time zone; DST days have 23 or 25 hours.
#[utoipa::path(
    get, path = "/v1/workshops/{id}/slots", tag = "workshops", operation_id = "getSlots",
    params(("id" = String, Path, description = "Workshop code, e.g. WS-01"), SlotParams),
    responses(
        (status = 200, description = "Windows, best first", body = Slots),
        (status = 400, description = "A bad or missing parameter, or an unknown job", body = ErrorBody),
        (status = 404, description = "No such workshop", body = ErrorBody),
    )
)]
pub async fn slots(
    State(state): State<AppState>,
    Path(code): Path<String>,
    params: Result<Query<SlotParams>, QueryRejection>,
) -> Result<Json<Slots>, ApiError> {
    let p = query(params)?;
    let job = p.job.filter(|j| !j.is_empty()).ok_or_else(|| {
        ApiError::bad_request("invalid_parameter", "job is required (a job code)")
    })?;
    let now = Utc::now();
    let from = parse_time("from", p.from.as_deref())?.unwrap_or(now);
    let to = parse_time("to", p.to.as_deref())?.unwrap_or(from + Duration::days(14));
    check_period(from, to)?;
    let n = limit(p.limit.as_deref(), 50, 1000)?;
    let plan = cap::plan(state.store.pool(), &code, &[job.as_str()], from, to)
        .await?
        .map_err(missing)?;
    let picked = plan.windows(from, to, now, None, Choose::Best(n as usize));
    let duration_minutes = i32::try_from(plan.minutes()).unwrap_or(i32::MAX);
    let estimated_cost_cents = plan.estimated_cost_cents();
    let Some(job) = plan.jobs.into_iter().next() else {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("no job {job}"),
        ));
    };
    Ok(Json(Slots {
        estimated_cost_cents,
        duration_minutes,
        workshop: plan.workshop.code,
        time_zone: plan.workshop.time_zone,
        job,
        parts_ready_at: picked.earliest,
        parts: plan.parts,
        feasible: picked.feasible,
        windows: picked.windows,
    }))
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
