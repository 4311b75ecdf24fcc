//! `POST /v1/import/telemetry` and `POST /v1/import/profiles`: the bulk imports for
//! platforms that push, NDJSON bodies with one row a line (the fields of the CSV columns).
//! The rows take the CLI's path (`import::…::import_rows`), so a re-post imports nothing
//! twice; refused lines are listed with their line and reason.

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::import::telemetry::{Layout, LONG_COLUMNS};
use crate::import::{profiles, telemetry, ImportError, ImportReport, RowReject, Rows, Sink};
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// Rows per request at most.
pub const MAX_ROWS: usize = 50_000;

/// What became of the rows of one request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportAnswer {
    pub rows: u64,
    /// Stored now.
    pub imported: u64,
    /// Stored before (a re-post).
    pub already: u64,
    pub rejected: u64,
    /// The refused lines (the first 1,000).
    pub rejects: Vec<RowReject>,
}

fn failed(e: ImportError) -> ApiError {
    match e {
        ImportError::Store(e) => ApiError::Internal(e),
        other => ApiError::bad_request("invalid_body", other.to_string()),
    }
}

fn rows(body: &Bytes, header: &[&str]) -> Result<Rows, ApiError> {
    let lines = body
        .split(|b| *b == b'\n')
        .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
        .count();
    if lines == 0 {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body holds no row",
        ));
    }
    if lines > MAX_ROWS {
        return Err(ApiError::unprocessable(
            "too_many_rows",
            format!("{lines} rows; at most {MAX_ROWS} a request"),
        ));
    }
    Ok(Rows::ndjson(body, header))
}

/// The answer, or a 4xx when no row could be imported or was there already.
fn answer(report: ImportReport, sink: Sink) -> Result<Json<ImportAnswer>, ApiError> {
    let (rejected, rejects) = sink.finish().map_err(failed)?;
    if report.imported == 0 && report.already == 0 {
        let listed: Vec<String> = rejects
            .iter()
            .take(5)
            .map(|r| format!("line {}: {}: {}", r.line, r.reason, r.detail))
            .collect();
        return Err(ApiError::unprocessable(
            "invalid_rows",
            format!("no row could be imported: {}", listed.join("; ")),
        ));
    }
    Ok(Json(ImportAnswer {
        rows: report.rows,
        imported: report.imported,
        already: report.already,
        rejected,
        rejects,
    }))
}

/// Import telemetry values, one `{"vin", "ts", "signal", "value"}` a line
///
/// NDJSON (`application/x-ndjson`), at most 50,000 lines and 2 MiB. `ts` is RFC 3339 or epoch
/// milliseconds, `signal` a VSS path. Each value is identified by vehicle, time and signal, so
/// a re-post imports nothing twice (`already`). Refused lines are listed with their reason.
#[utoipa::path(
    post, path = "/v1/import/telemetry", tag = "ingest", operation_id = "importTelemetry",
    request_body(content = String, description = "NDJSON: {\"vin\", \"ts\", \"signal\", \"value\"} a line", content_type = "application/x-ndjson"),
    responses(
        (status = 200, description = "Counts; refused lines listed", body = ImportAnswer),
        (status = 400, description = "An empty body", body = ErrorBody),
        (status = 422, description = "Over 50,000 lines (`too_many_rows`), or no line could be imported (`invalid_rows`, the message says why)", body = ErrorBody),
    )
)]
pub async fn telemetry(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<ImportAnswer>, ApiError> {
    let mut rows = rows(&body, &LONG_COLUMNS)?;
    let mut sink = Sink::list();
    let report = telemetry::import_rows(
        state.store.clone(),
        &mut rows,
        &Layout::Long,
        state.store.wire_limits(),
        &mut sink,
        "the body",
    )
    .await
    .map_err(failed)?;
    state.metrics.values.inc_by(report.values);
    answer(report, sink)
}

/// Import vehicle profiles, one object a line
///
/// NDJSON (`application/x-ndjson`), at most 50,000 lines: `vin` and optionally `make`,
/// `model`, `model_year`, `powertrain`, `home_workshop` (must exist), `owner_ref`,
/// `offers_consent`. Each line replaces its vehicle's profile, as `PUT /v1/vehicles/{vin}`.
#[utoipa::path(
    post, path = "/v1/import/profiles", tag = "vehicles", operation_id = "importProfiles",
    request_body(content = String, description = "NDJSON: one profile a line, with its `vin`", content_type = "application/x-ndjson"),
    responses(
        (status = 200, description = "Counts (`imported`: vehicles new to the store); refused lines listed", body = ImportAnswer),
        (status = 400, description = "An empty body", body = ErrorBody),
        (status = 422, description = "Over 50,000 lines (`too_many_rows`), or no line could be imported (`invalid_rows`)", body = ErrorBody),
    )
)]
pub async fn profiles(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<ImportAnswer>, ApiError> {
    let mut rows = rows(&body, &profiles::COLUMNS)?;
    let mut sink = Sink::list();
    let report = profiles::import_rows(state.store.pool(), &mut rows, &mut sink, "the body")
        .await
        .map_err(failed)?;
    answer(report, sink)
}
