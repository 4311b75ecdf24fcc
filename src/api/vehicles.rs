//! `/v1/vehicles/{vin}`: registry profile, latest values, active DTCs and current risk,
//! telemetry (raw or bucketed, cursor-paged) and DTC history with lifecycle.

use super::{error::ApiError, AppState};
use crate::store::read::{self, TelemetryQuery};
use crate::wire::Vin;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

const DEFAULT_LIMIT: i64 = 10_000;
const MAX_LIMIT: i64 = 100_000;

pub(super) async fn vehicle(state: &AppState, vin: &str) -> Result<(Vin, i32), ApiError> {
    let vin = Vin::parse(vin).map_err(|e| ApiError::bad_request("invalid_vin", e.detail))?;
    let id = read::vehicle_id(state.store.pool(), vin.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no vehicle {vin}")))?;
    Ok((vin, id))
}

pub async fn profile(
    State(state): State<AppState>,
    Path(vin): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (vin, id) = vehicle(&state, &vin).await?;
    let profile = read::vehicle_profile(state.store.pool(), id).await?;
    let registry = crate::store::profiles::profile(state.store.pool(), id).await?;
    let risk = crate::store::risk::vehicle_risk(state.store.pool(), id).await?;
    Ok(Json(json!({
        "vin": vin,
        "profile": registry,
        "first_seen": profile.first_seen,
        "last_sample_at": profile.last_sample_at,
        "signals": profile.latest,
        "active_dtcs": profile.active_dtcs,
        "risk": risk,
    })))
}

#[derive(Debug, Deserialize)]
pub struct TelemetryParams {
    signal: Option<String>,
    from: Option<String>,
    to: Option<String>,
    bucket: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub(super) fn parse_time(name: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("{name}={s:?} is not RFC 3339: {e}"),
                )
            })
    })
    .transpose()
}

/// `30s`, `15m`, `1h`, `1d`: between one second and 31 days.
pub fn parse_bucket(s: &str) -> Result<i64, ApiError> {
    let err = || {
        ApiError::bad_request(
            "invalid_parameter",
            format!("bucket={s:?}: expected a count and unit s, m, h or d (1s to 31d), e.g. 15m"),
        )
    };
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num.parse().map_err(|_| err())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(err)?,
        "h" => n.checked_mul(3600).ok_or_else(err)?,
        "d" => n.checked_mul(86_400).ok_or_else(err)?,
        _ => return Err(err()),
    };
    if !(1..=31 * 86_400).contains(&secs) {
        return Err(err());
    }
    Ok(secs)
}

fn parse_cursor(s: &str) -> Result<(DateTime<Utc>, i32), ApiError> {
    let err = || {
        ApiError::bad_request(
            "invalid_cursor",
            format!("cursor {s:?} was not issued by this API"),
        )
    };
    let (micros, sig) = s.split_once('_').ok_or_else(err)?;
    let micros: i64 = micros.parse().map_err(|_| err())?;
    let sig: i32 = sig.parse().map_err(|_| err())?;
    let ts = DateTime::from_timestamp_micros(micros).ok_or_else(err)?;
    Ok((ts, sig))
}

pub async fn telemetry(
    State(state): State<AppState>,
    Path(vin): Path<String>,
    params: Result<Query<TelemetryParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_parameter", e.body_text()))?;
    let (vin, id) = vehicle(&state, &vin).await?;
    let to = parse_time("to", p.to.as_deref())?.unwrap_or_else(Utc::now);
    let from = parse_time("from", p.from.as_deref())?.unwrap_or(to - Duration::days(1));
    if from >= to {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "from must be before to",
        ));
    }
    let limit = match p.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("limit={s:?}: expected 1 to {MAX_LIMIT}"),
                ))
            }
        },
    };
    let signal = p.signal.as_deref().filter(|s| !s.is_empty());
    if let Some(bucket) = p.bucket.as_deref() {
        let secs = parse_bucket(bucket)?;
        let buckets =
            read::telemetry_buckets(state.store.pool(), id, signal, from, to, secs, limit).await?;
        return Ok(Json(json!({
            "vin": vin, "from": from, "to": to, "bucket": bucket, "buckets": buckets,
        })));
    }
    let after = p.cursor.as_deref().map(parse_cursor).transpose()?;
    let q = TelemetryQuery {
        vehicle_id: id,
        signal,
        from,
        to,
        after,
        limit,
    };
    let (points, next) = read::telemetry(state.store.pool(), &q).await?;
    Ok(Json(json!({
        "vin": vin, "from": from, "to": to, "points": points,
        "next_cursor": next.map(|(ts, sig)| format!("{}_{sig}", ts.timestamp_micros())),
    })))
}

pub async fn dtcs(
    State(state): State<AppState>,
    Path(vin): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (vin, id) = vehicle(&state, &vin).await?;
    let dtcs = read::dtc_history(state.store.pool(), id, 100).await?;
    Ok(Json(json!({"vin": vin, "dtcs": dtcs})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!(parse_bucket("15m").unwrap(), 900);
        assert_eq!(parse_bucket("1d").unwrap(), 86_400);
        for bad in ["", "m", "0s", "32d", "1w", "-1h", "99999999999999999d"] {
            assert!(parse_bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let (ts, sig) = parse_cursor("1795000000000000_7").unwrap();
        assert_eq!(ts.timestamp_micros(), 1_795_000_000_000_000);
        assert_eq!(sig, 7);
        assert!(parse_cursor("abc").is_err());
        assert!(parse_cursor("1_x").is_err());
    }
}
