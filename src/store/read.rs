//! Read queries behind the API: telemetry (raw or bucketed) and DTC history with lifecycle.
//! The same SQL runs on plain PostgreSQL and TimescaleDB. Samples are read through the
//! `all_samples` view, which also shows rows a layout migration has not moved yet.

use super::StoreError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

pub async fn vehicle_id(pool: &PgPool, vin: &str) -> Result<Option<i32>, StoreError> {
    Ok(sqlx::query_scalar("SELECT id FROM vehicles WHERE vin = $1")
        .bind(vin)
        .fetch_optional(pool)
        .await?)
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Point {
    pub ts: DateTime<Utc>,
    pub signal: String,
    pub value: f64,
}

/// Position after the last returned point, for cursor pagination: (ts, seq, signal id).
pub type TelemetryCursor = (DateTime<Utc>, i64, i32);

/// A stored signal: its name and its id (resolved once, so a read of one signal needs no
/// lookup: `Store::signal_ref` caches it, `signal_ref` reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalRef<'a> {
    pub id: i32,
    pub name: &'a str,
}

/// The stored signal of that name, if any (never creates one).
pub async fn signal_ref<'a>(
    pool: &PgPool,
    name: &'a str,
) -> Result<Option<SignalRef<'a>>, StoreError> {
    let id: Option<i32> = sqlx::query_scalar("SELECT id FROM signals WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(id.map(|id| SignalRef { id, name }))
}

pub struct TelemetryQuery<'a> {
    pub vehicle_id: i32,
    /// One signal, or every signal of the vehicle.
    pub signal: Option<SignalRef<'a>>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub after: Option<TelemetryCursor>,
    pub limit: i64,
}

/// The one-signal read: `$1` vehicle, `$2` signal id, `$3`..`$4` the range, `$5` the limit;
/// the two literals add a page's start (`$6` ts, `$7` seq, `$8` signal id) inside the fenced
/// subquery (for the index) and after it (the exact position).
macro_rules! one_signal_sql {
    ($inner:literal, $outer:literal) => {
        concat!(
            "SELECT x.ts, x.seq, x.value FROM (
                 SELECT a.ts, a.seq,
                        a.signal_values[array_position(a.signal_ids, $2)] AS value
                 FROM all_samples a
                 WHERE a.vehicle_id = $1 AND a.ts >= $3 AND a.ts < $4",
            $inner,
            "
                 ORDER BY a.ts, a.seq
                 OFFSET 0) x
             WHERE x.value IS NOT NULL",
            $outer,
            "
             ORDER BY x.ts, x.seq
             LIMIT $5"
        )
    };
}

/// Raw values ordered by (ts, seq, signal), at most `limit`, and the cursor for the next page.
/// Two samples at one instant (different `seq`) give two points.
pub async fn telemetry(
    pool: &PgPool,
    q: &TelemetryQuery<'_>,
) -> Result<(Vec<Point>, Option<TelemetryCursor>), StoreError> {
    let (after_ts, after_seq, after_sig) = q.after.unwrap_or((q.from, i64::MIN, i32::MIN));
    let from = q.from.max(after_ts);
    // One signal: its value picked out of each sample; all: every value unnested. The
    // signal's id comes resolved: a join to `signals` here cost more than the read.
    let rows: Vec<(DateTime<Utc>, i64, i32, String, f64)> = match q.signal {
        Some(signal) => {
            // The signal's position is searched once per sample: the fenced subquery (OFFSET
            // 0) keeps the planner from copying the expression into a filter, and a sample
            // without the signal gives NULL. A first page has no cursor to compare with.
            // (Measured against `$2 = ANY(signal_ids)` and the cursor's row compare on every
            // page: docs/performance.md, "Storage layout".)
            let sql = match q.after {
                None => one_signal_sql!("", ""),
                Some(_) => one_signal_sql!(
                    " AND (a.ts, a.seq) >= ($6, $7)",
                    " AND (x.ts, x.seq, $2) > ($6, $7, $8)"
                ),
            };
            let mut query = sqlx::query_as::<_, (DateTime<Utc>, i64, f64)>(sql)
                .bind(q.vehicle_id)
                .bind(signal.id)
                .bind(from)
                .bind(q.to)
                .bind(q.limit + 1);
            if q.after.is_some() {
                query = query.bind(after_ts).bind(after_seq).bind(after_sig);
            }
            query
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|(ts, seq, value)| (ts, seq, signal.id, signal.name.to_owned(), value))
                .collect()
        }
        None => {
            sqlx::query_as(
                "SELECT a.ts, a.seq, u.signal_id, s.name, u.value
                 FROM all_samples a
                 CROSS JOIN LATERAL unnest(a.signal_ids, a.signal_values) AS u (signal_id, value)
                 JOIN signals s ON s.id = u.signal_id
                 WHERE a.vehicle_id = $1 AND a.ts >= $2 AND a.ts < $3
                   AND (a.ts, a.seq, u.signal_id) > ($4, $5, $6)
                 ORDER BY a.ts, a.seq, u.signal_id
                 LIMIT $7",
            )
            .bind(q.vehicle_id)
            .bind(from)
            .bind(q.to)
            .bind(after_ts)
            .bind(after_seq)
            .bind(after_sig)
            .bind(q.limit + 1)
            .fetch_all(pool)
            .await?
        }
    };
    let more = rows.len() as i64 > q.limit;
    let rows = &rows[..rows.len().min(q.limit as usize)];
    let next = if more {
        rows.last().map(|(ts, seq, sig, ..)| (*ts, *seq, *sig))
    } else {
        None
    };
    Ok((
        rows.iter()
            .map(|(ts, _, _, signal, value)| Point {
                ts: *ts,
                signal: signal.clone(),
                value: *value,
            })
            .collect(),
        next,
    ))
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Bucket {
    pub ts: DateTime<Utc>,
    pub signal: String,
    pub n: i64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
}

/// Aggregates per bucket, of one signal or of every signal of the vehicle. Whole-day
/// buckets read the daily rollup; others aggregate raw values.
pub async fn telemetry_buckets(
    pool: &PgPool,
    vehicle_id: i32,
    signal: Option<SignalRef<'_>>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket_secs: i64,
    limit: i64,
) -> Result<Vec<Bucket>, StoreError> {
    // One statement per shape: a kept generic plan of `$2 IS NULL OR ...` cannot fold the
    // branch away (the rollup read measured 1.3 × with one).
    let rows: Vec<(DateTime<Utc>, String, i64, f64, f64, f64)> = if bucket_secs == 86_400 {
        let query = match signal {
            Some(signal) => sqlx::query_as(
                "SELECT d.day, s.name, d.n, d.min, d.max, d.sum / d.n
                 FROM signal_daily d JOIN signals s ON s.id = d.signal_id
                 WHERE d.vehicle_id = $1 AND d.signal_id = $4
                   AND d.day >= date_bin(INTERVAL '1 day', $2, TIMESTAMPTZ '2000-01-01')
                   AND d.day < $3
                 ORDER BY d.day
                 LIMIT $5",
            )
            .bind(vehicle_id)
            .bind(from)
            .bind(to)
            .bind(signal.id),
            None => sqlx::query_as(
                "SELECT d.day, s.name, d.n, d.min, d.max, d.sum / d.n
                 FROM signal_daily d JOIN signals s ON s.id = d.signal_id
                 WHERE d.vehicle_id = $1
                   AND d.day >= date_bin(INTERVAL '1 day', $2, TIMESTAMPTZ '2000-01-01')
                   AND d.day < $3
                 ORDER BY d.day, s.name
                 LIMIT $4",
            )
            .bind(vehicle_id)
            .bind(from)
            .bind(to),
        };
        query.bind(limit).fetch_all(pool).await?
    } else if let Some(signal) = signal {
        // Only the signal's samples, its value picked out of each (as the one-signal series),
        // in a function that keeps its plan (migration 61 says why).
        sqlx::query_as::<_, (DateTime<Utc>, i64, f64, f64, f64)>(
            "SELECT bucket, n, min, max, avg FROM signal_buckets($1, $2, $3, $4, $5, $6)",
        )
        .bind(vehicle_id)
        .bind(signal.id)
        .bind(from)
        .bind(to)
        .bind(bucket_secs as f64)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|(ts, n, min, max, avg)| (ts, signal.name.to_owned(), n, min, max, avg))
        .collect()
    } else {
        sqlx::query_as(
            "SELECT date_bin(make_interval(secs => $4), a.ts, TIMESTAMPTZ '2000-01-01') AS bucket,
                    s.name, count(*), min(u.value), max(u.value), avg(u.value)
             FROM all_samples a
             CROSS JOIN LATERAL unnest(a.signal_ids, a.signal_values) AS u (signal_id, value)
             JOIN signals s ON s.id = u.signal_id
             WHERE a.vehicle_id = $1 AND a.ts >= $2 AND a.ts < $3
             GROUP BY bucket, s.name
             ORDER BY bucket, s.name
             LIMIT $5",
        )
        .bind(vehicle_id)
        .bind(from)
        .bind(to)
        .bind(bucket_secs as f64)
        .bind(limit)
        .fetch_all(pool)
        .await?
    };
    Ok(rows
        .into_iter()
        .map(|(ts, signal, n, min, max, avg)| Bucket {
            ts,
            signal,
            n,
            min,
            max,
            avg,
        })
        .collect())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DtcEvent {
    pub ts: DateTime<Utc>,
    pub status: String,
    pub source: Option<String>,
    pub occurrence_count: Option<i16>,
    pub source_address: Option<i16>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DtcHistory {
    pub code: String,
    pub spn: Option<i32>,
    pub fmi: Option<i16>,
    pub active: bool,
    pub status: String,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub cleared_at: Option<DateTime<Utc>>,
    pub reports: i32,
    pub events: Vec<DtcEvent>,
}

type DtcRow = (
    String,
    Option<i32>,
    Option<i16>,
    bool,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    i32,
);

type EventRow = (
    String,
    DateTime<Utc>,
    String,
    Option<String>,
    Option<i16>,
    Option<i16>,
);
type ActiveRow = (String, String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Where a page of DTC history ends: (active, last status time, code) of its last code.
pub type DtcCursor = (bool, DateTime<Utc>, String);

/// The codes the vehicle reported, active first, then by latest status, after `after`, at
/// most `limit`, each with its recent events (newest first, at most `events_per_code`); and
/// the cursor of the next page when more remain.
pub async fn dtc_history(
    pool: &PgPool,
    vehicle_id: i32,
    events_per_code: i64,
    after: Option<&DtcCursor>,
    limit: i64,
) -> Result<(Vec<DtcHistory>, Option<DtcCursor>), StoreError> {
    let (after_active, after_ts, after_code) = match after {
        Some((a, t, c)) => (Some(*a), Some(*t), Some(c.as_str())),
        None => (None, None, None),
    };
    let mut codes: Vec<DtcRow> = sqlx::query_as(
        "SELECT * FROM (
             SELECT code, spn, fmi, (cleared_at IS NULL OR last_seen > cleared_at) AS active,
                    last_status, last_status_ts, first_seen, last_seen, cleared_at, reports
             FROM dtcs WHERE vehicle_id = $1) d
         WHERE $2::bool IS NULL
            OR (NOT active AND $2)
            OR (active = $2 AND (last_status_ts < $3
                                 OR (last_status_ts = $3 AND code > $4)))
         ORDER BY active DESC, last_status_ts DESC, code
         LIMIT $5",
    )
    .bind(vehicle_id)
    .bind(after_active)
    .bind(after_ts)
    .bind(after_code)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    let next = if codes.len() as i64 > limit {
        codes.truncate(limit.max(0) as usize);
        codes.last().map(|c| (c.3, c.5, c.0.clone()))
    } else {
        None
    };
    let wanted: Vec<&str> = codes.iter().map(|c| c.0.as_str()).collect();
    let events: Vec<EventRow> = sqlx::query_as(
        "SELECT code, ts, status, source, oc, sa FROM (
                 SELECT code, ts, status, source, oc, sa,
                        row_number() OVER (PARTITION BY code ORDER BY ts DESC, seq DESC) AS rn
                 FROM dtc_events WHERE vehicle_id = $1 AND code = ANY($3)) e
             WHERE rn <= $2 ORDER BY code, ts DESC",
    )
    .bind(vehicle_id)
    .bind(events_per_code)
    .bind(&wanted)
    .fetch_all(pool)
    .await?;
    let mut by_code: std::collections::HashMap<String, Vec<DtcEvent>> = Default::default();
    for (code, ts, status, source, oc, sa) in events {
        by_code.entry(code).or_default().push(DtcEvent {
            ts,
            status,
            source,
            occurrence_count: oc,
            source_address: sa,
        });
    }
    let history = codes
        .into_iter()
        .map(
            |(code, spn, fmi, active, status, _, first_seen, last_seen, cleared_at, reports)| {
                let events = by_code.remove(&code).unwrap_or_default();
                DtcHistory {
                    code,
                    spn,
                    fmi,
                    active,
                    status,
                    first_seen,
                    last_seen,
                    cleared_at,
                    reports,
                    events,
                }
            },
        )
        .collect();
    Ok((history, next))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LatestValue {
    pub signal: String,
    pub ts: DateTime<Utc>,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActiveDtc {
    pub code: String,
    pub status: String,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
}

pub struct VehicleProfile {
    pub first_seen: DateTime<Utc>,
    pub last_sample_at: Option<DateTime<Utc>>,
    pub latest: Vec<LatestValue>,
    pub active_dtcs: Vec<ActiveDtc>,
}

/// Latest values listed per vehicle at most: as many as a vehicle may have signals.
pub const MAX_LATEST_VALUES: i64 = 1_000;

/// Latest value of each signal the vehicle sent (at most `MAX_LATEST_VALUES`, by name; each
/// a backward index scan that stops at the last day the rollup holds for the signal), and its
/// active DTCs.
pub async fn vehicle_profile(pool: &PgPool, vehicle_id: i32) -> Result<VehicleProfile, StoreError> {
    let (first_seen, last_sample_at): (DateTime<Utc>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT v.first_seen, (SELECT max(ts) FROM all_samples WHERE vehicle_id = v.id)
         FROM vehicles v WHERE v.id = $1",
    )
    .bind(vehicle_id)
    .fetch_one(pool)
    .await?;
    let latest: Vec<(String, DateTime<Utc>, f64)> = sqlx::query_as(
        "SELECT s.name, x.ts, x.signal_values[array_position(x.signal_ids, s.id)]
         FROM vehicle_signals vs
         JOIN signals s ON s.id = vs.signal_id
         CROSS JOIN LATERAL (
             SELECT a.ts, a.signal_ids, a.signal_values FROM all_samples a
             WHERE a.vehicle_id = $1 AND a.signal_ids @> ARRAY[s.id]
               AND a.ts >= COALESCE((SELECT max(d.day) FROM signal_daily d
                                     WHERE d.vehicle_id = $1 AND d.signal_id = s.id),
                                    '-infinity')
             ORDER BY a.ts DESC, a.seq DESC
             LIMIT 1) x
         WHERE vs.vehicle_id = $1
         ORDER BY s.name
         LIMIT $2",
    )
    .bind(vehicle_id)
    .bind(MAX_LATEST_VALUES)
    .fetch_all(pool)
    .await?;
    let active: Vec<ActiveRow> = sqlx::query_as(
        "SELECT code, last_status, first_seen, last_seen FROM dtcs
         WHERE vehicle_id = $1 AND (cleared_at IS NULL OR last_seen > cleared_at)
         ORDER BY last_seen DESC NULLS LAST, code",
    )
    .bind(vehicle_id)
    .fetch_all(pool)
    .await?;
    Ok(VehicleProfile {
        first_seen,
        last_sample_at,
        latest: latest
            .into_iter()
            .map(|(signal, ts, value)| LatestValue { signal, ts, value })
            .collect(),
        active_dtcs: active
            .into_iter()
            .map(|(code, status, first_seen, last_seen)| ActiveDtc {
                code,
                status,
                first_seen,
                last_seen,
            })
            .collect(),
    })
}
