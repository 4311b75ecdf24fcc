//! Helpers for the model tests: writing vehicles, daily telemetry (through the real daily
//! rollup refresh), DTC events and service records straight into a test database; a small
//! synthetic fleet whose brake failures follow a known signal; and artifacts with known
//! probabilities.
#![allow(dead_code)]

use aftercare::component::Component;
use aftercare::model::artifact::{Artifact, ComponentModel, DataSummary, HorizonModel, Training};
use aftercare::model::dataset::Window;
use aftercare::model::feature_list;
use aftercare::model::learn::{BinaryModel, Learner, Prep, TrainConfig};
use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use sqlx::PgPool;
use std::collections::BTreeMap;

pub async fn vehicle(pool: &PgPool, vin: &str, powertrain: &str, model_year: i16) -> i32 {
    let id: i32 = sqlx::query_scalar("INSERT INTO vehicles (vin) VALUES ($1) RETURNING id")
        .bind(vin)
        .fetch_one(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO vehicle_profiles (vehicle_id, powertrain, model_year) VALUES ($1, $2, $3)",
    )
    .bind(id)
    .bind(powertrain)
    .bind(model_year)
    .execute(pool)
    .await
    .unwrap();
    id
}

pub async fn signal_id(pool: &PgPool, name: &str) -> i32 {
    sqlx::query("INSERT INTO signals (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT id FROM signals WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Raw values `(vehicle, signal, ts, value)`, stored as samples (not through ingest: the
/// rollup is rebuilt with `refresh_rollup`).
pub async fn telemetry(pool: &PgPool, rows: &[(i32, &str, DateTime<Utc>, f64)]) {
    let mut ids = BTreeMap::new();
    for (_, name, ..) in rows {
        if !ids.contains_key(name) {
            ids.insert(*name, signal_id(pool, name).await);
        }
    }
    let rows: Vec<(i32, i32, DateTime<Utc>, f64)> = rows
        .iter()
        .map(|&(v, name, ts, x)| (v, ids[name], ts, x))
        .collect();
    crate::common::insert_values(pool, &rows).await;
}

/// Rebuilds `signal_daily` from raw values. The values above are inserted straight into the
/// sample table (bypassing the ingest writer and its rollup deltas), so the rollup is computed
/// the way the deltas would have made it (from the `telemetry` view of the samples).
pub async fn refresh_rollup(pool: &PgPool) {
    sqlx::raw_sql(
        "DELETE FROM signal_daily;
         INSERT INTO signal_daily (vehicle_id, signal_id, day, n, min, max, sum, sumsq)
         SELECT vehicle_id, signal_id, date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '2000-01-01'),
                count(*), min(value), max(value), sum(value), sum(value * value)
         FROM telemetry GROUP BY 1, 2, 3",
    )
    .execute(pool)
    .await
    .unwrap();
}

pub async fn dtc(pool: &PgPool, vehicle_id: i32, ts: DateTime<Utc>, code: &str, status: &str) {
    let flavor = aftercare::store::Flavor::detect(pool).await.unwrap();
    aftercare::store::retention::ensure_partitions_between(pool, flavor, ts, ts)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO dtc_events (vehicle_id, ts, seq, code, status) VALUES ($1, $2, 0, $3, $4)",
    )
    .bind(vehicle_id)
    .bind(ts)
    .bind(code)
    .bind(status)
    .execute(pool)
    .await
    .unwrap();
}

pub async fn service(
    pool: &PgPool,
    vehicle_id: i32,
    at: DateTime<Utc>,
    component: &str,
    kind: &str,
    odometer_km: f64,
) {
    sqlx::query(
        "INSERT INTO service_records (vehicle_id, source, external_id, performed_at, odometer_km,
                                      component, kind, job)
         VALUES ($1, 'test', gen_random_uuid()::text, $2, $3, $4, $5, 'job')",
    )
    .bind(vehicle_id)
    .bind(at)
    .bind(odometer_km)
    .bind(component)
    .bind(kind)
    .execute(pool)
    .await
    .unwrap();
}

pub fn midnight(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::days(1)).unwrap()
}

pub fn vin(i: usize) -> String {
    format!("TESTVHC{i:010}")
}

/// A fleet of ICE vehicles over `days` days ending at `end` (midnight), one reading a day at
/// noon: odometer (60 km a day) and four brake pads. Vehicle i wears its front-left pads at
/// `rate(i)` % a day (the others at a tenth of that) plus noise; when that pad reaches 95 %
/// the brakes fail, a repair is recorded and the pads are new (10 %). Returns the failures
/// as (vehicle index, time), and the vehicle ids.
pub struct Fleet {
    pub ids: Vec<i32>,
    pub failures: Vec<(usize, DateTime<Utc>)>,
    pub wear_now: Vec<f64>,
}

pub async fn brake_fleet(
    pool: &PgPool,
    n: usize,
    days: i64,
    end: DateTime<Utc>,
    rate: impl Fn(usize) -> f64,
) -> Fleet {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let start = end - Duration::days(days);
    let pad = |w| aftercare::catalog::wheel_signal(w, aftercare::catalog::PAD_WEAR_LEAF);
    let pads: Vec<String> = (0..4).map(pad).collect();
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    let mut wear_now = Vec::new();
    let mut rows: Vec<(i32, String, DateTime<Utc>, f64)> = Vec::new();
    for i in 0..n {
        let id = vehicle(pool, &vin(i), "ice", 2019).await;
        ids.push(id);
        let r = rate(i);
        // Start part-worn, at a different point of the cycle for each vehicle; a slow
        // wearer starts low enough never to reach the limit.
        let total = r * days as f64 * 1.2;
        let span = if total < 80.0 { 80.0 - total } else { 80.0 };
        let mut wear = 10.0 + rng.gen::<f64>() * span;
        for d in 0..days {
            let ts = start + Duration::days(d) + Duration::hours(12);
            let km = 20_000.0 + 60.0 * d as f64;
            rows.push((id, aftercare::catalog::ODOMETER.into(), ts, km));
            wear += r * (0.8 + 0.4 * rng.gen::<f64>());
            if wear >= 95.0 {
                failures.push((i, ts));
                service(pool, id, ts + Duration::hours(2), "brakes", "repair", km).await;
                wear = 10.0;
            }
            for (w, name) in pads.iter().enumerate() {
                let v = if w == 0 {
                    wear
                } else {
                    10.0 + (wear - 10.0) / 10.0
                };
                rows.push((id, name.clone(), ts, v + rng.gen::<f64>() - 0.5));
            }
        }
        wear_now.push(wear);
    }
    let borrowed: Vec<(i32, &str, DateTime<Utc>, f64)> = rows
        .iter()
        .map(|(a, b, c, d)| (*a, b.as_str(), *c, *d))
        .collect();
    telemetry(pool, &borrowed).await;
    refresh_rollup(pool).await;
    Fleet {
        ids,
        failures,
        wear_now,
    }
}

/// A scoring worker's settings for tests: no debounce, a long lease, `batch` marks a round.
pub fn worker_config(batch: i64) -> aftercare::model::worker::WorkerConfig {
    use std::time::Duration;
    aftercare::model::worker::WorkerConfig {
        artifact: "unused".into(),
        debounce: Duration::ZERO,
        max_delay: Duration::from_secs(60),
        lease: Duration::from_secs(60),
        poll: Duration::from_millis(50),
        batch,
        sweep_every: Duration::from_secs(3600),
        stale_after: Duration::from_secs(3600),
        reload_check: Duration::from_millis(50),
    }
}

/// Marks vehicles dirty as the ingest writer does, already due (marked an hour ago).
pub async fn mark(pool: &PgPool, ids: &[i32]) {
    sqlx::query(
        "INSERT INTO score_dirty (vehicle_id, marked_at)
         SELECT id, now() - INTERVAL '1 hour' FROM UNNEST($1::int4[]) AS id
         ON CONFLICT (vehicle_id) DO UPDATE SET marked_at = EXCLUDED.marked_at",
    )
    .bind(ids)
    .execute(pool)
    .await
    .unwrap();
}

/// An artifact whose every component scores `p` for every horizon (base-rate learners), so
/// tests can tell which artifact scored a vehicle.
pub fn constant_artifact(version: &str, p: f64) -> Artifact {
    let components = Component::ALL
        .iter()
        .map(|&component| {
            let n = feature_list::for_component(component).len();
            let horizons = [7, 30, 90]
                .into_iter()
                .map(|days| HorizonModel {
                    days,
                    model: BinaryModel {
                        prep: Prep {
                            median: vec![0.0; n],
                            mean: vec![0.0; n],
                            scale: vec![1.0; n],
                        },
                        learner: Learner::Prior { p },
                        threshold: 0.5,
                        train_rows: 0,
                        train_positives: 0,
                        validation: Vec::new(),
                    },
                    rule_baseline: None,
                })
                .collect();
            ComponentModel::new(component, horizons)
        })
        .collect();
    let t = Utc::now();
    let training = Training {
        window: Window {
            from: t - Duration::days(30),
            to: t,
            cadence_days: 7,
        },
        split_at: t - Duration::days(10),
        horizons: vec![7, 30, 90],
        config: TrainConfig::default(),
        labels: "test".into(),
    };
    let mut artifact = Artifact::new(
        training,
        DataSummary::default(),
        components,
        BTreeMap::new(),
    );
    artifact.version = version.to_owned();
    artifact
}
