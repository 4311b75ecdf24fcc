//! `POST /v1/ingest/traccar`: Traccar's forwarded positions over HTTP (`forward.type = json`),
//! one object or NDJSON. Each position takes the MQTT path's way into the store (the same
//! mapping, device register, admission and one transaction with ledgers, rollup deltas and
//! score marks), so a position posted twice, or also sent over MQTT, is stored once. A
//! position that cannot be stored is kept as a dead letter with its reason and listed in the
//! answer with its line; the rest are stored.

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::config::WriteMethod;
use crate::feeds::{traccar, Mapped};
use crate::metrics::ReasonLabel;
use crate::store::{devices, BatchItem, DeadLetter, Outcome};
use crate::wire::Reject;
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Positions per request at most.
pub const MAX_POSITIONS: usize = 10_000;
/// The `topic` of dead letters from this endpoint.
pub const DEAD_LETTER_TOPIC: &str = "POST /v1/ingest/traccar";

/// What became of the positions of one request.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResult {
    /// Positions stored now.
    pub stored: u64,
    /// Positions stored before (a redelivery).
    pub duplicate: u64,
    /// Positions kept as dead letters, listed in `rejects`.
    pub rejected: u64,
    pub rejects: Vec<LineReject>,
}

/// A position that was not stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineReject {
    /// 1-based: the NDJSON line, or the element of a JSON array.
    pub line: usize,
    /// The dead-letter reason, e.g. `unknown_device`.
    pub reason: String,
    pub detail: String,
}

// Describes the request body; never built.
/// One forwarded position as Traccar sends it (see Traccar's `forward.json`).
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[schema(as = TraccarForward)]
pub struct ForwardBody {
    /// `id`, `fixTime` (or `deviceTime`/`serverTime`), `latitude`, `longitude`, `speed`
    /// (knots), `attributes` (`obdSpeed`, `odometer`, `coolantTemp`, `dtcs`, `vin`, ...).
    position: Value,
    /// `uniqueId` is looked up in the device register.
    device: Option<Value>,
}

/// Store Traccar's forwarded positions
///
/// One JSON object, a JSON array of them, or NDJSON (`application/x-ndjson`, one object a
/// line). Values are mapped to VSS signals in VSS units; the vehicle is the position's `vin`
/// attribute or the VIN the device register holds for `device.uniqueId` at the position's
/// time. Idempotent: the position's id and fix time identify it.
#[utoipa::path(
    post, path = "/v1/ingest/traccar", tag = "ingest", operation_id = "ingestTraccar",
    request_body(content = ForwardBody, description = "One position, an array, or NDJSON"),
    responses(
        (status = 200, description = "Counts; refused positions listed with their line and reason (each kept as a dead letter)", body = IngestResult),
        (status = 400, description = "An empty body, or no position is JSON (`invalid_json`)", body = ErrorBody),
        (status = 422, description = "More than 10,000 positions (`too_many_positions`), or none could be stored (`invalid_position`; each kept as a dead letter, the message lists why)", body = ErrorBody),
    )
)]
pub async fn traccar(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<IngestResult>, ApiError> {
    let lines = split_positions(&body)?;
    let now = Utc::now();
    let limits = state.store.wire_limits().clone();
    let parsed: Vec<(usize, Bytes, Result<Mapped, Reject>)> = lines
        .into_iter()
        .map(|(n, line)| {
            let mapped = traccar::parse(&line, now, &limits);
            (n, line, mapped)
        })
        .collect();
    let lookups: Vec<(&str, chrono::DateTime<Utc>)> = parsed
        .iter()
        .filter_map(|(_, _, m)| m.as_ref().ok())
        .filter(|m| m.vin.is_none())
        .filter_map(|m| m.device.as_deref().map(|d| (d, m.ts)))
        .collect();
    let mut vins = devices::vins_at(state.store.pool(), &lookups)
        .await?
        .into_iter();
    let dead = |line: &Bytes, reject: Reject| BatchItem::DeadLetter {
        letter: DeadLetter {
            topic: DEAD_LETTER_TOPIC.to_owned(),
            payload: line.clone(),
            reason: reject.reason.as_str().to_owned(),
            detail: reject.detail,
        },
        received_at: now,
    };
    let mut items: Vec<BatchItem> = Vec::with_capacity(parsed.len());
    for (_, line, mapped) in &parsed {
        let item = match mapped {
            Err(reject) => dead(line, reject.clone()),
            Ok(m) => {
                let registered = if m.vin.is_none() && m.device.is_some() {
                    vins.next().flatten()
                } else {
                    None
                };
                match m.clone().into_message(registered.as_deref()) {
                    Ok(message) => BatchItem::Message {
                        message,
                        received_at: now,
                    },
                    Err(reject) => dead(line, reject),
                }
            }
        };
        items.push(item);
    }
    let admission = state.store.admit(&items).await?;
    for (i, reject) in &admission.refused {
        if let (Some(item), Some((_, line, _))) = (items.get_mut(*i), parsed.get(*i)) {
            *item = dead(line, reject.clone());
        }
    }
    let result = state
        .store
        .write_admitted(&items, &admission, WriteMethod::Copy, None)
        .await?;
    state.metrics.values.inc_by(result.values_stored);
    let mut answer = IngestResult {
        stored: 0,
        duplicate: 0,
        rejected: 0,
        rejects: Vec::new(),
    };
    for ((item, outcome), (line, _, _)) in items.iter().zip(&result.outcomes).zip(&parsed) {
        match outcome {
            Outcome::Stored => answer.stored += 1,
            Outcome::Duplicate => answer.duplicate += 1,
            Outcome::DeadLetter | Outcome::Ignored => {
                if let BatchItem::DeadLetter { letter, .. } = item {
                    answer.rejected += 1;
                    state
                        .metrics
                        .dead_letters
                        .get_or_create(&ReasonLabel {
                            reason: letter.reason.clone(),
                        })
                        .inc();
                    answer.rejects.push(LineReject {
                        line: *line,
                        reason: letter.reason.clone(),
                        detail: letter.detail.clone(),
                    });
                }
            }
        }
    }
    // Nothing stored and nothing known: the request as a whole is refused, so a client that
    // sends one position at a time (Traccar's forwarder) sees a 4xx. The dead letters stay.
    if answer.stored == 0 && answer.duplicate == 0 {
        let all_json = answer.rejects.iter().all(|r| r.reason == "invalid_json");
        let listed: Vec<String> = answer
            .rejects
            .iter()
            .take(5)
            .map(|r| format!("line {}: {}: {}", r.line, r.reason, r.detail))
            .collect();
        let message = format!(
            "no position could be stored (each is kept as a dead letter): {}",
            listed.join("; ")
        );
        return Err(if all_json {
            ApiError::bad_request("invalid_json", message)
        } else {
            ApiError::unprocessable("invalid_position", message)
        });
    }
    Ok(Json(answer))
}

/// The positions of a body with their 1-based line (or array element): one JSON object, the
/// elements of a JSON array, or the non-empty lines of NDJSON (a line that is not JSON is
/// refused on its own, with its line number).
fn split_positions(body: &Bytes) -> Result<Vec<(usize, Bytes)>, ApiError> {
    let positions: Vec<(usize, Bytes)> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i + 1, Bytes::from(v.to_string().into_bytes())))
            .collect(),
        Ok(_) => vec![(1, body.clone())],
        Err(_) => {
            let mut out = Vec::new();
            let mut start = 0;
            let mut line = 1;
            for (i, b) in body.iter().enumerate() {
                if *b == b'\n' {
                    out.push((line, body.slice(start..i)));
                    start = i + 1;
                    line += 1;
                }
            }
            out.push((line, body.slice(start..)));
            out.retain(|(_, l)| l.iter().any(|b| !b.is_ascii_whitespace()));
            out
        }
    };
    if positions.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body holds no position",
        ));
    }
    if positions.len() > MAX_POSITIONS {
        return Err(ApiError::unprocessable(
            "too_many_positions",
            format!(
                "{} positions; at most {MAX_POSITIONS} a request",
                positions.len()
            ),
        ));
    }
    Ok(positions)
}
