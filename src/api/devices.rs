//! `PUT /v1/devices/{device_id}`: the device register, a tracker's id (an IMEI, a Traccar
//! `uniqueId`) to the VIN of the car it is in, from a time on (now by default), so a tracker
//! moved to another car files its positions under the new car from then on.

use super::error::{ApiError, ErrorBody};
use super::fields::{parse_body, Fields};
use super::AppState;
use crate::store::devices::{self, Registered};
use crate::wire::Vin;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// The `{device_id}` path parameter.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct DevicePath {
    /// The tracker's id: an IMEI, a Traccar `uniqueId` (1 to 128 characters)
    device_id: String,
}

// Describes the body the handler reads field by field; never built.
/// A registration: the tracker is in this vehicle from `from` on.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeviceRegistration)]
pub struct RegistrationBody {
    vin: Vin,
    /// When the tracker went into this vehicle (RFC 3339); default now.
    from: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceRegistered {
    pub device_id: String,
    pub vin: Vin,
    pub from: DateTime<Utc>,
    /// `new` (the device was unknown), `moved` (it was in another vehicle) or `unchanged`.
    pub registered: &'static str,
}

/// Register a tracker to a vehicle from a time on
///
/// Positions (Traccar's, a mapped feed's) that carry no VIN of their own are filed under the
/// VIN registered for their device at their time. Registering a device to the VIN it already
/// has changes nothing.
#[utoipa::path(
    put, path = "/v1/devices/{device_id}", tag = "devices", operation_id = "putDevice",
    params(DevicePath),
    request_body = RegistrationBody,
    responses(
        (status = 200, description = "Registered (`moved` or `unchanged`)", body = DeviceRegistered),
        (status = 201, description = "A device new to the register", body = DeviceRegistered),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "A field breaks a rule; the message names it", body = ErrorBody),
    )
)]
pub async fn put(
    State(state): State<AppState>,
    Path(device_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<DeviceRegistered>), ApiError> {
    if device_id.is_empty() || device_id.chars().count() > 128 {
        return Err(ApiError::bad_request(
            "invalid_path",
            "device_id must be 1 to 128 characters",
        ));
    }
    let value = parse_body(&body)?;
    let f = Fields::new(&value, "", &["vin", "from"])?;
    let vin = f.str("vin", 17)?;
    let vin = Vin::parse(&vin).map_err(|e| {
        ApiError::unprocessable("invalid_field", format!("{}: {}", f.name("vin"), e.detail))
    })?;
    let from = f
        .parsed("from", |s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("{s:?} is not RFC 3339: {e}"))
        })?
        .unwrap_or_else(Utc::now);
    let registered = devices::register(state.store.pool(), &device_id, vin.as_str(), from).await?;
    let (status, word) = match registered {
        Registered::New => (StatusCode::CREATED, "new"),
        Registered::Moved => (StatusCode::OK, "moved"),
        Registered::Unchanged => (StatusCode::OK, "unchanged"),
    };
    Ok((
        status,
        Json(DeviceRegistered {
            device_id,
            vin,
            from,
            registered: word,
        }),
    ))
}
