//! `PUT /v1/vehicles/{vin}`: the registry's profile of a vehicle (make, model, year,
//! powertrain, home workshop, owner, consent to proactive offers). Replaces the whole profile
//! and creates the vehicle when it is new.

use super::error::ApiError;
use super::fields::{parse_body, Fields};
use super::AppState;
use crate::store::profiles::{self, Powertrain, Profile};
use crate::wire::Vin;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

const FIELDS: &[&str] = &[
    "make",
    "model",
    "model_year",
    "powertrain",
    "home_workshop",
    "owner_ref",
    "offers_consent",
];

/// A profile from its JSON object. `offers_consent` defaults to true.
pub fn parse_profile(value: &Value) -> Result<Profile, ApiError> {
    let f = Fields::new(value, "", FIELDS)?;
    Ok(Profile {
        make: f.opt_str("make", 100)?,
        model: f.opt_str("model", 100)?,
        model_year: f
            .opt_f64("model_year", 1980.0..=2100.0)?
            .map(|y| {
                if y.fract() == 0.0 {
                    Ok(y as i16)
                } else {
                    Err(ApiError::unprocessable(
                        "invalid_field",
                        format!("model_year must be a whole year, got {y}"),
                    ))
                }
            })
            .transpose()?,
        powertrain: f.parsed("powertrain", |s| s.parse::<Powertrain>())?,
        home_workshop: f.opt_str("home_workshop", 64)?,
        owner_ref: f.opt_str("owner_ref", 200)?,
        offers_consent: f.opt_bool("offers_consent")?.unwrap_or(true),
    })
}

pub async fn put(
    State(state): State<AppState>,
    Path(vin): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let vin = Vin::parse(&vin).map_err(|e| ApiError::bad_request("invalid_vin", e.detail))?;
    let profile = parse_profile(&parse_body(&body)?)?;
    let created = profiles::upsert_profiles(
        state.store.pool(),
        &[(vin.as_str().to_owned(), profile.clone())],
    )
    .await?;
    let status = if created.first() == Some(&true) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"vin": vin, "profile": profile}))))
}
