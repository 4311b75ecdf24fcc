//! `/v1/vehicles/{vin}`: registry profile, latest values, active DTCs and current risk,
//! telemetry (raw or bucketed, cursor-paged) and DTC history with lifecycle.

use super::doc::VinPath;
use super::error::{ApiError, ErrorBody};
use super::input::{limit, parse_time, query};
use super::AppState;
use crate::store::profiles::StoredProfile;
use crate::store::read::{
    self, ActiveDtc, Bucket, DtcCursor, DtcHistory, LatestValue, Point, TelemetryQuery,
};
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
    let p = query(params)?;
    let (vin, id) = vehicle(&state, &vin).await?;
    let to = parse_time("to", p.to.as_deref())?.unwrap_or_else(Utc::now);
    let from = parse_time("from", p.from.as_deref())?.unwrap_or(to - Duration::days(1));
    if from >= to {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "from must be before to",
        ));
    }
    let limit = limit(p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let bucket = match p.bucket.as_deref() {
        Some(bucket) => Some((bucket, parse_bucket(bucket)?)),
        None => None,
    };
    // A page cursor belongs to raw points; bucketed answers are not paged by one.
    let after = match bucket {
        None => p.cursor.as_deref().map(parse_cursor).transpose()?,
        Some(_) => None,
    };
    // Resolved once (from the store's cache), so neither read joins the signal table. A name
    // never stored has no values: nothing to read.
    let (signal, unknown) = match p.signal.as_deref().filter(|s| !s.is_empty()) {
        None => (None, false),
        Some(name) => {
            let signal = state.store.signal_ref(name).await?;
            (signal, signal.is_none())
        }
    };
    if let Some((bucket, secs)) = bucket {
        let buckets = if unknown {
            Vec::new()
        } else {
            read::telemetry_buckets(state.store.pool(), id, signal, from, to, secs, limit).await?
        };
        return Ok(Json(Telemetry::Buckets(TelemetryBuckets {
            vin,
            from,
            to,
            bucket: bucket.to_owned(),
            buckets,
        })));
    }
    let q = TelemetryQuery {
        vehicle_id: id,
        signal,
        from,
        to,
        after,
        limit,
    };
    let (points, next) = if unknown {
        (Vec::new(), None)
    } else {
        read::telemetry(state.store.pool(), &q).await?
    };
    Ok(Json(Telemetry::Points(TelemetryPoints {
        vin,
        from,
        to,
        points,
        next_cursor: next.map(format_cursor),
    })))
}

/// DTC codes per page at most (each with up to `DTC_EVENTS` events).
const MAX_DTC_LIMIT: i64 = 200;
const DEFAULT_DTC_LIMIT: i64 = 50;
const DTC_EVENTS: i64 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DtcParams {
    /// Codes per page: 1 to 200, default 50
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` from the previous page
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Dtcs {
    pub vin: Vin,
    /// Active codes first, then by latest status, each with its latest 100 events.
    pub dtcs: Vec<DtcHistory>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

fn encode_dtc_cursor((active, ts, code): &DtcCursor) -> String {
    format!("{}_{}_{code}", u8::from(*active), ts.timestamp_micros())
}

fn decode_dtc_cursor(s: &str) -> Result<DtcCursor, ApiError> {
    let err = || {
        ApiError::bad_request(
            "invalid_cursor",
            format!("cursor {s:?} was not issued by this API"),
        )
    };
    let mut parts = s.splitn(3, '_');
    let active = match parts.next() {
        Some("1") => true,
        Some("0") => false,
        _ => return Err(err()),
    };
    let micros: i64 = parts.next().and_then(|m| m.parse().ok()).ok_or_else(err)?;
    let ts = DateTime::from_timestamp_micros(micros).ok_or_else(err)?;
    let code = parts.next().filter(|c| !c.is_empty()).ok_or_else(err)?;
    Ok((active, ts, code.to_owned()))
}

/// DTC history with lifecycle (first seen, last seen, cleared), active first, cursor-paged
#[utoipa::path(
    get, path = "/v1/vehicles/{vin}/dtcs", tag = "vehicles", operation_id = "getDtcs",
    params(VinPath, DtcParams),
    responses(
        (status = 200, description = "One page of DTCs with their recent events", body = Dtcs),
        (status = 400, description = "Not a VIN, a bad parameter, or a cursor this API did not issue", body = ErrorBody),
        (status = 404, description = "No such vehicle", body = ErrorBody),
    )
)]
pub async fn dtcs(
    State(state): State<AppState>,
    Path(vin): Path<String>,
    params: Result<Query<DtcParams>, QueryRejection>,
) -> Result<Json<Dtcs>, ApiError> {
    let p = query(params)?;
    let n = limit(p.limit.as_deref(), DEFAULT_DTC_LIMIT, MAX_DTC_LIMIT)?;
    let after = p.cursor.as_deref().map(decode_dtc_cursor).transpose()?;
    let (vin, id) = vehicle(&state, &vin).await?;
    let (dtcs, next) =
        read::dtc_history(state.store.pool(), id, DTC_EVENTS, after.as_ref(), n).await?;
    Ok(Json(Dtcs {
        vin,
        dtcs,
        next_cursor: next.as_ref().map(encode_dtc_cursor),
    }))
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
    fn dtc_cursors_round_trip_and_refuse_garbage() {
        let ts = DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap();
        for c in [
            (true, ts, "P0301".to_owned()),
            (false, ts, "SPN110-FMI0".to_owned()),
        ] {
            assert_eq!(decode_dtc_cursor(&encode_dtc_cursor(&c)).unwrap(), c);
        }
        for bad in ["", "2_1_P0301", "1_x_P0301", "1_1", "1_1_", "P0301"] {
            assert!(decode_dtc_cursor(bad).is_err(), "{bad}");
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
