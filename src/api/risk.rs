//! Risk scores: `GET /v1/vehicles/{vin}/risk` (per component and horizon, with top factors and
//! model version) and `GET /v1/fleet/risk` (vehicles ranked by 30-day risk, keyset-paged).

use super::doc::VinPath;
use super::error::{ApiError, ErrorBody};
use super::input::{limit, query};
use super::vehicles::vehicle;
use super::AppState;
use crate::component::Component;
use crate::store::risk::{self, FleetCursor, FleetRisk, Risk};
use crate::wire::Vin;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Serialize, ToSchema)]
pub struct VehicleRisk {
    pub vin: Vin,
    /// One entry per component the vehicle has, highest 30-day risk first.
    pub components: Vec<Risk>,
}

/// Current failure risk per component: probability of a repair within 7, 30 and 90 days, urgency, top factors, model version
///
/// One entry per component the vehicle has, highest 30-day risk first. `urgency_days` is the
/// likely number of days to failure (null when no horizon is at its alert threshold).
/// `factors` are the top contributing reasons in a service advisor's words:
/// `{feature, value, contribution, text}`. Empty until the vehicle has been scored.
#[utoipa::path(
    get, path = "/v1/vehicles/{vin}/risk", tag = "risk", operation_id = "getVehicleRisk",
    params(VinPath),
    responses(
        (status = 200, description = "Risk per component", body = VehicleRisk),
        (status = 400, description = "Not a VIN", body = ErrorBody),
        (status = 404, description = "No such vehicle", body = ErrorBody),
    )
)]
pub async fn vehicle_risk(
    State(state): State<AppState>,
    Path(vin): Path<String>,
) -> Result<Json<VehicleRisk>, ApiError> {
    let (vin, id) = vehicle(&state, &vin).await?;
    let components = risk::vehicle_risk(state.store.pool(), id).await?;
    Ok(Json(VehicleRisk { vin, components }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FleetParams {
    /// One component's risk; without it, each vehicle once with its riskiest component
    #[param(value_type = Option<Component>)]
    component: Option<String>,
    /// Only vehicles whose home workshop this is (a workshop code)
    workshop: Option<String>,
    /// Lowest p30 to include, 0 to 1, default 0
    #[param(value_type = Option<f64>, minimum = 0, maximum = 1)]
    min: Option<String>,
    /// 1 to 1000, default 100
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` from the previous page
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FleetRanking {
    /// The component asked for, or null.
    pub component: Option<Component>,
    /// The workshop asked for, or null.
    pub workshop: Option<String>,
    /// Always `p30`.
    pub ranked_by: &'static str,
    pub vehicles: Vec<FleetRisk>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalid_parameter", message)
}

/// Cursor: the f32 bits of the last p30 in hex, and the vehicle id.
fn encode_cursor((p30, vehicle_id): FleetCursor) -> String {
    format!("{:08x}_{vehicle_id}", p30.to_bits())
}

fn decode_cursor(s: &str) -> Result<FleetCursor, ApiError> {
    let err = || {
        ApiError::bad_request(
            "invalid_cursor",
            format!("cursor {s:?} was not issued by this API"),
        )
    };
    let (bits, id) = s.split_once('_').ok_or_else(err)?;
    let bits = u32::from_str_radix(bits, 16).map_err(|_| err())?;
    let id: i32 = id.parse().map_err(|_| err())?;
    let p30 = f32::from_bits(bits);
    if !p30.is_finite() {
        return Err(err());
    }
    Ok((p30, id))
}

/// Vehicles ranked by 30-day failure risk
///
/// Ordered by p30 descending, then vehicle. With `component`: that component's risk; without:
/// each vehicle once, with its riskiest component. Keyset-paged: pass `next_cursor` as
/// `cursor` for the next page; each vehicle appears once across pages.
#[utoipa::path(
    get, path = "/v1/fleet/risk", tag = "risk", operation_id = "getFleetRisk",
    params(FleetParams),
    responses(
        (status = 200, description = "Ranked vehicles", body = FleetRanking),
        (status = 400, description = "A bad parameter, or a cursor this API did not issue", body = ErrorBody),
    )
)]
pub async fn fleet_risk(
    State(state): State<AppState>,
    params: Result<Query<FleetParams>, QueryRejection>,
) -> Result<Json<FleetRanking>, ApiError> {
    let p = query(params)?;
    let component = p
        .component
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<Component>()
                .map_err(|e| invalid(format!("component: {e}")))
        })
        .transpose()?;
    let min = match p.min.as_deref() {
        None => 0.0,
        Some(s) => match s.parse::<f32>() {
            Ok(v) if (0.0..=1.0).contains(&v) => v,
            _ => {
                return Err(invalid(format!(
                    "min={s:?}: expected a probability from 0 to 1"
                )))
            }
        },
    };
    let limit = limit(p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let (vehicles, next) = risk::fleet_risk(
        state.store.pool(),
        component.map(Component::as_str),
        p.workshop.as_deref().filter(|w| !w.is_empty()),
        min,
        after,
        limit,
    )
    .await?;
    Ok(Json(FleetRanking {
        component,
        workshop: p.workshop.filter(|w| !w.is_empty()),
        ranked_by: "p30",
        vehicles,
        next_cursor: next.map(encode_cursor),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_exactly_and_refuse_garbage() {
        let c = (0.123_456_79_f32, 42);
        assert_eq!(decode_cursor(&encode_cursor(c)).unwrap(), c);
        for bad in ["", "x_1", "3f800000", "3f800000_x", "7f800000_1"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
