//! `POST /v1/service-records`: completed workshop jobs from dealer systems (one record or an
//! array), idempotent on (source, external_id). Validates every field before anything is
//! stored; the store writes all records of a request in one transaction.

use super::error::{ApiError, ErrorBody};
use super::fields::{parse_body, Fields};
use super::AppState;
use crate::component::Component;
use crate::store::capacity::workshop_by_code;
use crate::store::service_records::{
    insert_service_records, NewServiceRecord, ServiceKind, StoredRecord,
};
use crate::wire::Vin;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The first of `codes` (by position) that names no workshop, with its position; each
/// distinct code is looked up once.
pub(super) async fn first_unknown_workshop<'a>(
    state: &AppState,
    codes: impl Iterator<Item = Option<&'a str>>,
) -> Result<Option<(usize, String)>, ApiError> {
    let mut known = std::collections::HashSet::new();
    for (i, code) in codes.enumerate() {
        let Some(code) = code else { continue };
        if known.contains(code) {
            continue;
        }
        if workshop_by_code(state.store.pool(), code).await?.is_none() {
            return Ok(Some((i, code.to_owned())));
        }
        known.insert(code);
    }
    Ok(None)
}

pub(super) fn unknown_workshop(field: &str, code: &str) -> ApiError {
    ApiError::unprocessable(
        "unknown_workshop",
        format!("{field}: no workshop {code:?} (PUT /v1/workshops/{{id}} creates one)"),
    )
}

/// Records per request at most.
pub const MAX_RECORDS: usize = 1000;

const FIELDS: &[&str] = &[
    "vin",
    "source",
    "external_id",
    "performed_at",
    "odometer_km",
    "workshop",
    "component",
    "kind",
    "job",
    "notes",
];

fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("{s:?} is not RFC 3339: {e}"))?
        .with_timezone(&Utc);
    let earliest = Utc.with_ymd_and_hms(1980, 1, 1, 0, 0, 0).single();
    if earliest.is_some_and(|e| t < e) || t > now + Duration::days(1) {
        return Err(format!("{s} is not between 1980 and tomorrow"));
    }
    Ok(t)
}

/// One record from its JSON object; `at` names it in messages (`[3]` in an array).
pub fn parse_record(
    value: &Value,
    at: &str,
    now: DateTime<Utc>,
) -> Result<NewServiceRecord, ApiError> {
    let f = Fields::new(value, at, FIELDS)?;
    let vin = f.str("vin", 17)?;
    let vin = Vin::parse(&vin).map_err(|e| {
        ApiError::unprocessable("invalid_field", format!("{}: {}", f.name("vin"), e.detail))
    })?;
    let performed_at = f.parsed("performed_at", |s| parse_time(s, now))?;
    let odometer_km = f.opt_f64("odometer_km", 0.0..=5_000_000.0)?;
    let component = f.parsed("component", |s| {
        s.parse::<Component>().map_err(|e| e.to_string())
    })?;
    let kind = f.parsed("kind", |s| s.parse::<ServiceKind>())?;
    Ok(NewServiceRecord {
        vin: vin.as_str().to_owned(),
        source: f.str("source", 100)?,
        external_id: f.str("external_id", 200)?,
        performed_at: f.required("performed_at", performed_at)?,
        odometer_km: Some(f.required("odometer_km", odometer_km)?),
        workshop: Some(f.str("workshop", 64)?),
        component: f.required("component", component)?,
        kind: f.required("kind", kind)?,
        job: f.str("job", 100)?,
        notes: f.opt_str("notes", 4000)?,
    })
}

// Describes what `parse_record` reads field by field (so that a refusal names the field);
// never built.
/// A completed workshop job, as a dealer system reports it.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ServiceRecord)]
pub struct RecordBody {
    vin: Vin,
    /// The dealer system.
    #[schema(max_length = 100)]
    source: String,
    /// The job's id in that system.
    #[schema(max_length = 200)]
    external_id: String,
    /// RFC 3339, between 1980 and tomorrow.
    performed_at: chrono::DateTime<Utc>,
    #[schema(minimum = 0, maximum = 5000000)]
    odometer_km: f64,
    /// Workshop code.
    #[schema(max_length = 64)]
    workshop: String,
    component: Component,
    kind: ServiceKind,
    /// Job code, e.g. brake_pads_front.
    #[schema(max_length = 100)]
    job: String,
    #[schema(max_length = 4000)]
    notes: Option<String>,
}

/// One record or an array of 1 to 1000.
// Never built: describes the body for the document.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = ServiceRecords)]
pub enum RecordsBody {
    One(RecordBody),
    Many(Vec<RecordBody>),
}

/// What became of the records posted.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Stored {
    /// For a single record.
    One(StoredRecord),
    /// For an array: each record's id and whether it is new, in input order.
    Many {
        records: Vec<StoredRecord>,
        /// How many were new.
        created: usize,
        /// How many were already stored.
        existing: usize,
    },
}

/// Completed workshop jobs (one record or an array of up to 1000); idempotent on (source, external_id)
///
/// All records are validated before any is stored. A record whose (source, external_id) is
/// already stored is not stored again: its existing id comes back with created=false. Single
/// record: 201 {id, created: true} or 200 {id, created: false}. Array: {records: [{id,
/// created}], created, existing}, 201 when any was new. The vehicle is created when unknown;
/// the workshop must exist (422 `unknown_workshop`).
#[utoipa::path(
    post, path = "/v1/service-records", tag = "service-records", operation_id = "createServiceRecords",
    request_body = RecordsBody,
    responses(
        (status = 200, description = "Already stored", body = Stored),
        (status = 201, description = "Stored", body = Stored),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "A record breaks a rule; the message names it, e.g. `[3].performed_at: ...`; `unknown_workshop` for a workshop that does not exist", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Stored>), ApiError> {
    let now = Utc::now();
    let value = parse_body(&body)?;
    let (records, single) = match &value {
        Value::Array(items) => {
            if items.is_empty() || items.len() > MAX_RECORDS {
                return Err(ApiError::unprocessable(
                    "invalid_body",
                    format!(
                        "an array must hold 1 to {MAX_RECORDS} records, got {}",
                        items.len()
                    ),
                ));
            }
            let records = items
                .iter()
                .enumerate()
                .map(|(i, v)| parse_record(v, &format!("[{i}]"), now))
                .collect::<Result<Vec<_>, _>>()?;
            (records, false)
        }
        other => (vec![parse_record(other, "", now)?], true),
    };
    let workshops = records.iter().map(|r| r.workshop.as_deref());
    if let Some((i, code)) = first_unknown_workshop(&state, workshops).await? {
        let at = if single {
            String::new()
        } else {
            format!("[{i}].")
        };
        return Err(unknown_workshop(&format!("{at}workshop"), &code));
    }
    let stored = insert_service_records(state.store.pool(), &records).await?;
    let created = stored.iter().filter(|s| s.created).count();
    let status = if created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = match (single, stored.first()) {
        (true, Some(s)) => Stored::One(*s),
        _ => Stored::Many {
            created,
            existing: stored.len() - created,
            records: stored,
        },
    };
    Ok((status, Json(body)))
}
