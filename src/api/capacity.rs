//! `GET /v1/capacity/preview` (scope planner): demand against capacity per workshop, local
//! day and skill, with over-capacity days flagged and the jobs that drive them.

use super::error::{ApiError, ErrorBody};
use super::input::{limit, next_cursor, query};
use super::AppState;
use crate::capacity::preview::{self, Cell};
use crate::store::capacity as cap;
use crate::store::preview::preview_input;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Risks below this (largest horizon) are noise, not demand.
const MIN_RISK: f64 = 0.02;
const MAX_DAYS: u32 = 90;
/// Without `workshop=`, at most this many workshops (in code order) per page.
const MAX_WORKSHOPS: i64 = 50;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewParams {
    /// Workshop code; default every workshop, a page of them at a time
    workshop: Option<String>,
    /// First local day, YYYY-MM-DD; default today at the workshop
    #[param(value_type = Option<NaiveDate>)]
    from: Option<String>,
    /// 1 to 90; default 28
    #[param(value_type = Option<u32>, minimum = 1, maximum = 90)]
    days: Option<String>,
    /// Without `workshop=`: workshops per page, 1 to 50, default 50
    #[param(value_type = Option<i64>, minimum = 1, maximum = 50)]
    limit: Option<String>,
    /// Without `workshop=`: `next_cursor` from the previous page
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    pub days: u32,
    pub workshops: Vec<WorkshopPreview>,
    /// Pass as `cursor` for the next page of workshops; null on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Acceptance {
    #[schema(value_type = crate::component::Component)]
    pub component: String,
    /// Share of decided offers that were booked, smoothed towards a prior.
    pub rate: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Totals {
    pub capacity_hours: f64,
    pub booked_hours: f64,
    pub offer_hours: f64,
    pub risk_hours: f64,
    pub demand_hours: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OverCapacity {
    pub day: NaiveDate,
    pub skill: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkshopPreview {
    pub workshop: String,
    pub name: String,
    pub time_zone: String,
    pub from: NaiveDate,
    pub days: u32,
    /// The acceptance rate per component that weights open offers.
    pub acceptance: Vec<Acceptance>,
    pub totals: Totals,
    /// The cells whose demand exceeds capacity.
    pub over_capacity: Vec<OverCapacity>,
    /// One per local day and skill.
    pub cells: Vec<Cell>,
}

/// Demand against capacity per workshop, local day and skill
///
/// Hours booked, expected hours from open offers (weighted by the acceptance rate learned
/// from decided offers) and from at-risk vehicles without an offer (weighted by risk and
/// horizon), against rostered technician hours; over-capacity cells flagged with the jobs
/// that drive them.
#[utoipa::path(
    get, path = "/v1/capacity/preview", tag = "planning", operation_id = "getCapacityPreview",
    params(PreviewParams),
    responses(
        (status = 200, description = "The preview per workshop", body = Preview),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 404, description = "No such workshop", body = ErrorBody),
    )
)]
pub async fn preview(
    State(state): State<AppState>,
    params: Result<Query<PreviewParams>, QueryRejection>,
) -> Result<Json<Preview>, ApiError> {
    let p = query(params)?;
    let days = match p.days.as_deref() {
        None => 28,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|d| (1..=MAX_DAYS).contains(d))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("days={s:?}: expected 1 to {MAX_DAYS}"),
                )
            })?,
    };
    let from = p
        .from
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("from={s:?}: expected a date, YYYY-MM-DD"),
                )
            })
        })
        .transpose()?;
    let n = limit(p.limit.as_deref(), MAX_WORKSHOPS, MAX_WORKSHOPS)?;
    let (codes, next_cursor) = match p.workshop.as_deref().filter(|s| !s.is_empty()) {
        Some(code) => (vec![code.to_owned()], None),
        None => {
            let page = cap::list_workshops(state.store.pool(), p.cursor.as_deref(), n).await?;
            let next = next_cursor(&page, n, |w| w.code.clone());
            (page.into_iter().map(|w| w.code).collect(), next)
        }
    };
    let mut out = Vec::with_capacity(codes.len());
    for code in codes {
        out.push(one(&state, &code, from, days).await?);
    }
    Ok(Json(Preview {
        days,
        workshops: out,
        next_cursor,
    }))
}

async fn one(
    state: &AppState,
    code: &str,
    from: Option<NaiveDate>,
    days: u32,
) -> Result<WorkshopPreview, ApiError> {
    let tz = cap::workshop_by_code(state.store.pool(), code)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no workshop {code}")))?
        .time_zone;
    let tz = crate::capacity::parse_time_zone(&tz).unwrap_or(chrono_tz::UTC);
    // Default: today where the workshop is.
    let from = from.unwrap_or_else(|| Utc::now().with_timezone(&tz).date_naive());
    let (start, end) = preview::period(tz, from, days);
    let (workshop, input) = preview_input(state.store.pool(), code, start, end, MIN_RISK)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no workshop {code}")))?;
    let cells = preview::preview(&input, from, days);
    let over: Vec<&Cell> = cells.iter().filter(|c| c.over).collect();
    let mut acceptance: Vec<(&String, &f64)> = input.acceptance.iter().collect();
    acceptance.sort_by(|a, b| a.0.cmp(b.0));
    Ok(WorkshopPreview {
        workshop: workshop.code,
        name: workshop.name,
        time_zone: workshop.time_zone,
        from,
        days,
        acceptance: acceptance
            .into_iter()
            .map(|(c, r)| Acceptance {
                component: c.clone(),
                rate: (r * 1000.0).round() / 1000.0,
            })
            .collect(),
        totals: Totals {
            capacity_hours: sum(&cells, |c| c.capacity_hours),
            booked_hours: sum(&cells, |c| c.booked_hours),
            offer_hours: sum(&cells, |c| c.offer_hours),
            risk_hours: sum(&cells, |c| c.risk_hours),
            demand_hours: sum(&cells, |c| c.demand_hours),
        },
        over_capacity: over
            .iter()
            .map(|c| OverCapacity {
                day: c.day,
                skill: c.skill.clone(),
            })
            .collect(),
        cells,
    })
}

fn sum(cells: &[Cell], f: impl Fn(&Cell) -> f64) -> f64 {
    (cells.iter().map(f).sum::<f64>() * 100.0).round() / 100.0
}
