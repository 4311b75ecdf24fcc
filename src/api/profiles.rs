//! `PUT /v1/vehicles/{vin}`: the registry's profile of a vehicle (make, model, year,
//! powertrain, home workshop, owner, consent to proactive offers). Replaces the whole profile
//! and creates the vehicle when it is new.

use super::doc::VinPath;
use super::error::{ApiError, ErrorBody};
use super::fields::{parse_body, Fields};
use super::service_records::{first_unknown_workshop, unknown_workshop};
use super::AppState;
use crate::store::profiles::{self, Powertrain, Profile};
use crate::wire::Vin;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

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

// Describes the body that `parse_profile` reads field by field (so that a refusal names the
// field); never built.
/// A vehicle's registry profile. A PUT replaces the whole profile: absent fields become null.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VehicleProfile)]
pub struct ProfileBody {
    #[schema(max_length = 100)]
    make: Option<String>,
    #[schema(max_length = 100)]
    model: Option<String>,
    #[schema(minimum = 1980, maximum = 2100)]
    model_year: Option<i16>,
    powertrain: Option<Powertrain>,
    /// Workshop code, e.g. WS-01.
    #[schema(max_length = 64)]
    home_workshop: Option<String>,
    /// The owner's id in the OEM/dealer CRM.
    #[schema(max_length = 200)]
    owner_ref: Option<String>,
    /// False: the owner opted out of proactive offers.
    #[schema(default = true)]
    offers_consent: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileStored {
    pub vin: Vin,
    pub profile: Profile,
}

/// Register or replace the vehicle's registry profile; creates the vehicle when new
///
/// The whole profile is replaced: absent fields are stored as null (`offers_consent`
/// defaults to true). A home workshop must exist (422 `unknown_workshop`).
#[utoipa::path(
    put, path = "/v1/vehicles/{vin}", tag = "vehicles", operation_id = "putVehicleProfile",
    params(VinPath),
    request_body = ProfileBody,
    responses(
        (status = 200, description = "Profile replaced", body = ProfileStored),
        (status = 201, description = "Vehicle created with this profile", body = ProfileStored),
        (status = 400, description = "Not a VIN, or the body is not JSON", body = ErrorBody),
        (status = 422, description = "A field breaks a rule; the message names it; `unknown_workshop` for a home workshop that does not exist", body = ErrorBody),
    )
)]
pub async fn put(
    State(state): State<AppState>,
    Path(vin): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<ProfileStored>), ApiError> {
    let vin = Vin::parse(&vin).map_err(|e| ApiError::bad_request("invalid_vin", e.detail))?;
    let profile = parse_profile(&parse_body(&body)?)?;
    let home = std::iter::once(profile.home_workshop.as_deref());
    if let Some((_, code)) = first_unknown_workshop(&state, home).await? {
        return Err(unknown_workshop("home_workshop", &code));
    }
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
    Ok((status, Json(ProfileStored { vin, profile })))
}
