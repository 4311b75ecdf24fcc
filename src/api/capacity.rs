//! `GET /v1/capacity/preview` (scope planner): demand against capacity per workshop, local
//! day and skill, with over-capacity days flagged and the jobs that drive them.

use super::input::query;
use super::{error::ApiError, AppState};
use crate::capacity::preview::{self, Cell};
use crate::store::capacity as cap;
use crate::store::preview::preview_input;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

/// Risks below this (largest horizon) are noise, not demand.
const MIN_RISK: f64 = 0.02;
const MAX_DAYS: u32 = 90;
/// Without `workshop=`, at most this many workshops (in code order) are previewed.
const MAX_WORKSHOPS: i64 = 50;

#[derive(Debug, Deserialize)]
pub struct PreviewParams {
    workshop: Option<String>,
    from: Option<String>,
    days: Option<String>,
}

pub async fn preview(
    State(state): State<AppState>,
    params: Result<Query<PreviewParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
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
    let codes: Vec<String> = match p.workshop.as_deref().filter(|s| !s.is_empty()) {
        Some(code) => vec![code.to_owned()],
        None => cap::list_workshops(state.store.pool(), None, MAX_WORKSHOPS)
            .await?
            .into_iter()
            .map(|w| w.code)
            .collect(),
    };
    let mut out = Vec::with_capacity(codes.len());
    for code in codes {
        out.push(one(&state, &code, from, days).await?);
    }
    Ok(Json(json!({"days": days, "workshops": out})))
}

async fn one(
    state: &AppState,
    code: &str,
    from: Option<NaiveDate>,
    days: u32,
) -> Result<Value, ApiError> {
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
    Ok(json!({
        "workshop": workshop.code,
        "name": workshop.name,
        "time_zone": workshop.time_zone,
        "from": from,
        "days": days,
        "acceptance": acceptance.into_iter().map(|(c, r)| json!({"component": c, "rate": (r * 1000.0).round() / 1000.0})).collect::<Vec<_>>(),
        "totals": {
            "capacity_hours": sum(&cells, |c| c.capacity_hours),
            "booked_hours": sum(&cells, |c| c.booked_hours),
            "offer_hours": sum(&cells, |c| c.offer_hours),
            "risk_hours": sum(&cells, |c| c.risk_hours),
            "demand_hours": sum(&cells, |c| c.demand_hours),
        },
        "over_capacity": over.iter().map(|c| json!({"day": c.day, "skill": c.skill})).collect::<Vec<_>>(),
        "cells": cells,
    }))
}

fn sum(cells: &[Cell], f: impl Fn(&Cell) -> f64) -> f64 {
    (cells.iter().map(f).sum::<f64>() * 100.0).round() / 100.0
}
