//! Risk scores: `GET /v1/vehicles/{vin}/risk` (per component and horizon, with top factors and
//! model version) and `GET /v1/fleet/risk` (vehicles ranked by 30-day risk, keyset-paged).

use super::vehicles::vehicle;
use super::{error::ApiError, AppState};
use crate::component::Component;
use crate::store::risk::{self, FleetCursor};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

pub async fn vehicle_risk(
    State(state): State<AppState>,
    Path(vin): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (vin, id) = vehicle(&state, &vin).await?;
    let components = risk::vehicle_risk(state.store.pool(), id).await?;
    Ok(Json(json!({"vin": vin, "components": components})))
}

#[derive(Debug, Deserialize)]
pub struct FleetParams {
    component: Option<String>,
    workshop: Option<String>,
    min: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
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

pub async fn fleet_risk(
    State(state): State<AppState>,
    params: Result<Query<FleetParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| invalid(e.body_text()))?;
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
    let limit = match p.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(invalid(format!("limit={s:?}: expected 1 to {MAX_LIMIT}"))),
        },
    };
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
    Ok(Json(json!({
        "component": component,
        "workshop": p.workshop.as_deref().filter(|w| !w.is_empty()),
        "ranked_by": "p30",
        "vehicles": vehicles,
        "next_cursor": next.map(encode_cursor),
    })))
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
