//! `/v1/vehicles/{vin}`: registry profile, latest values, active DTCs and current risk,
//! telemetry (raw or bucketed, cursor-paged) and DTC history with lifecycle.

use super::doc::VinPath;
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::store::profiles::StoredProfile;
use crate::store::read::{self, ActiveDtc, Bucket, DtcHistory, LatestValue, Point, TelemetryQuery};
use crate::store::risk::Risk;
use crate::wire::Vin;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

const DEFAULT_LIMIT: i64 = 10_000;
const MAX_LIMIT: i64 = 100_000;

pub(super) async fn vehicle(state: &AppState, vin: &str) -> Result<(Vin, i32), ApiError> {
    let vin = Vin::parse(vin).map_err(|e| ApiError::bad_request("invalid_vin", e.detail))?;
    let id = read::vehicle_id(state.store.pool(), vin.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no vehicle {vin}")))?;
    Ok((vin, id))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VehicleView {
    pub vin: Vin,
    /// The registry profile; null when the vehicle was never registered.
    pub profile: Option<StoredProfile>,
    pub first_seen: DateTime<Utc>,
    pub last_sample_at: Option<DateTime<Utc>>,
    /// The latest value of each signal.
    pub signals: Vec<LatestValue>,
    pub active_dtcs: Vec<ActiveDtc>,
    /// Current risk per component, highest 30-day risk first.
    pub risk: Vec<Risk>,
}

/// Vehicle view: registry profile, latest value of each signal, active DTCs, current risk per component
#[utoipa::path(
    get, path = "/v1/vehicles/{vin}", tag = "vehicles", operation_id = "getVehicle",
    params(VinPath),
    responses(
        (status = 200, description = "Profile", body = VehicleView),
        (status = 400, description = "Not a VIN", body = ErrorBody),
        (status = 404, description = "No such vehicle", body = ErrorBody),
    )
)]
pub async fn profile(
    State(state): State<AppState>,
    Path(vin): Path<String>,
) -> Result<Json<VehicleView>, ApiError> {
    let (vin, id) = vehicle(&state, &vin).await?;
    let profile = read::vehicle_profile(state.store.pool(), id).await?;
    let registry = crate::store::profiles::profile(state.store.pool(), id).await?;
    let risk = crate::store::risk::vehicle_risk(state.store.pool(), id).await?;
    Ok(Json(VehicleView {
        vin,
        profile: registry,
        first_seen: profile.first_seen,
        last_sample_at: profile.last_sample_at,
        signals: profile.latest,
        active_dtcs: profile.active_dtcs,
        risk,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TelemetryParams {
    /// VSS path, e.g. `Vehicle.Speed`; all signals when absent
    signal: Option<String>,
    /// RFC 3339, inclusive; default `to` minus 24 h
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// RFC 3339, exclusive; default now
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
    /// 1s to 31d: a count and unit s, m, h or d, e.g. `15m`
    #[param(pattern = "^[0-9]+[smhd]$")]
    bucket: Option<String>,
    /// 1 to 100000, default 10000
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100000)]
    limit: Option<String>,
    /// `next_cursor` from the previous page
    cursor: Option<String>,
}

/// Stored values, ordered by (ts, signal), one page.
#[derive(Debug, Serialize, ToSchema)]
pub struct TelemetryPoints {
    pub vin: Vin,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub points: Vec<Point>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// Count, min, max and average per bucket and signal.
#[derive(Debug, Serialize, ToSchema)]
pub struct TelemetryBuckets {
    pub vin: Vin,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The bucket width as asked, e.g. `1h`.
    pub bucket: String,
    pub buckets: Vec<Bucket>,
}

/// Points without `bucket`, buckets with it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Telemetry {
    Points(TelemetryPoints),
    Buckets(TelemetryBuckets),
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

/// A cursor is `{ts in µs}_{seq}_{signal id}`: the last point's position.
fn parse_cursor(s: &str) -> Result<read::TelemetryCursor, ApiError> {
    let err = || {
        ApiError::bad_request(
            "invalid_cursor",
            format!("cursor {s:?} was not issued by this API"),
        )
    };
    let mut parts = s.splitn(3, '_');
    let (Some(micros), Some(seq), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(err());
    };
    let micros: i64 = micros.parse().map_err(|_| err())?;
    let seq: i64 = seq.parse().map_err(|_| err())?;
    let sig: i32 = sig.parse().map_err(|_| err())?;
    let ts = DateTime::from_timestamp_micros(micros).ok_or_else(err)?;
    Ok((ts, seq, sig))
}

fn format_cursor((ts, seq, sig): read::TelemetryCursor) -> String {
    format!("{}_{seq}_{sig}", ts.timestamp_micros())
}

/// Stored signal values, or aggregates per bucket
///
/// Without `bucket`: values ordered by (ts, signal), at most `limit`, with `next_cursor` when
/// more remain. With `bucket` (e.g. 15m, 1h, 1d): count, min, max and average per bucket and
/// signal; whole days come from the daily rollup.
#[utoipa::path(
    get, path = "/v1/vehicles/{vin}/telemetry", tag = "vehicles", operation_id = "getTelemetry",
    params(
        VinPath,
        TelemetryParams,
    ),
    responses(
        (status = 200, description = "Points or buckets", body = Telemetry),
        (status = 400, description = "A bad VIN or parameter, or a cursor this API did not issue", body = ErrorBody),
        (status = 404, description = "No such vehicle", body = ErrorBody),
    )
)]
pub async fn telemetry(
    State(state): State<AppState>,
    Path(vin): Path<String>,
    params: Result<Query<TelemetryParams>, QueryRejection>,
) -> Result<Json<Telemetry>, ApiError> {
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
        return Ok(Json(Telemetry::Buckets(TelemetryBuckets {
            vin,
            from,
            to,
            bucket: bucket.to_owned(),
            buckets,
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
    Ok(Json(Telemetry::Points(TelemetryPoints {
        vin,
        from,
        to,
        points,
        next_cursor: next.map(format_cursor),
    })))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Dtcs {
    pub vin: Vin,
    /// Active codes first, each with its latest 100 events.
    pub dtcs: Vec<DtcHistory>,
}

/// DTC history with lifecycle (first seen, last seen, cleared), active first
#[utoipa::path(
    get, path = "/v1/vehicles/{vin}/dtcs", tag = "vehicles", operation_id = "getDtcs",
    params(VinPath),
    responses(
        (status = 200, description = "DTCs with their recent events", body = Dtcs),
        (status = 400, description = "Not a VIN", body = ErrorBody),
        (status = 404, description = "No such vehicle", body = ErrorBody),
    )
)]
pub async fn dtcs(
    State(state): State<AppState>,
    Path(vin): Path<String>,
) -> Result<Json<Dtcs>, ApiError> {
    let (vin, id) = vehicle(&state, &vin).await?;
    let dtcs = read::dtc_history(state.store.pool(), id, 100).await?;
    Ok(Json(Dtcs { vin, dtcs }))
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
        let (ts, seq, sig) = parse_cursor("1795000000000000_-1_7").unwrap();
        assert_eq!(ts.timestamp_micros(), 1_795_000_000_000_000);
        assert_eq!((seq, sig), (-1, 7));
        assert_eq!(format_cursor((ts, seq, sig)), "1795000000000000_-1_7");
        assert!(parse_cursor("abc").is_err());
        assert!(parse_cursor("1_x").is_err());
        assert!(parse_cursor("1_2").is_err());
        assert!(parse_cursor("1_2_x").is_err());
    }
}
