//! Scoring never misses a car with new data (issue 16): the scoring worker reads whole days
//! from the daily rollup, which on plain PostgreSQL is folded from per-batch deltas by a
//! background worker; a car whose data was still in unfolded deltas used to look inactive
//! and lose its mark as if scored. Against the real service, broker and database: a fleet
//! whose history ends yesterday, and one that delivers a week of stored data at once, are
//! scored although the background fold does not run; scoring and folding racing under a
//! continuous stream leave no car unscored (`AFTERCARE_SOAK_SECS`, default 15); and a car
//! with no recent data keeps its mark, with the reason, until new data comes.

mod common;
mod model_common;

use aftercare::config::WriteMethod;
use aftercare::model::score::Scorer;
use aftercare::model::worker;
use aftercare::store::risk::Unscored;
use aftercare::store::Store;
use bytes::Bytes;
use chrono::{DateTime, Duration as ChronoDuration, DurationRound, TimeDelta, Utc};
use common::*;
use model_common::{constant_artifact, worker_config};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn yesterday() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::days(1)).unwrap() - ChronoDuration::days(1)
}

fn car(i: usize) -> String {
    format!("WF0XXXGCDX{i:07}")
}

fn sample(ts: DateTime<Utc>, seq: i64, km: f64) -> Value {
    json!({
        "ts": ts.to_rfc3339(), "seq": seq,
        "signals": {
            aftercare::catalog::ODOMETER: km,
            "Vehicle.Chassis.Axle.Row1.Wheel.Left.Brake.PadWear": 40.0 + seq as f64 * 0.01,
            "Vehicle.LowVoltageBattery.CurrentVoltage": 12.5,
        }
    })
}

fn telemetry(vin: &str, payload: &Value) -> (String, Bytes) {
    (
        format!("v1/vehicles/{vin}/telemetry"),
        Bytes::from(payload.to_string()),
    )
}

/// A service with a constant model that scores (and no offers or notifications), folding
/// in the background every `rollup_interval_ms`; returns once the model is loaded.
async fn scoring_service(
    db: &TestDb,
    broker: &TestBroker,
    model_dir: &std::path::Path,
    rollup_interval_ms: u64,
    debounce_ms: u64,
) -> aftercare::service::RunningService {
    constant_artifact("race-1", 0.3).save(model_dir).unwrap();
    let mut config = config(&db.url, &broker.url(), "scoring-race");
    config.ingest.rollup_interval_ms = rollup_interval_ms;
    config.model.artifact = model_dir.join("current.json");
    config.model.debounce_ms = debounce_ms;
    config.model.poll_ms = 50;
    config.model.batch = 4;
    config.model.reload_check_ms = 100;
    config.offers.enabled = false;
    config.notify.enabled = false;
    let service = start_connected(config).await;
    let model = service.model.clone();
    wait_until(Duration::from_secs(30), "model loaded", || async {
        model.version().is_some()
    })
    .await;
    service
}

/// The background fold runs once at start (on an empty database) and not again for an hour:
/// the worst case of the race, every time.
const NO_BACKGROUND_FOLD_MS: u64 = 3_600_000;

async fn scored_vehicles(pool: &PgPool) -> i64 {
    count(pool, "SELECT count(DISTINCT vehicle_id) FROM risk_current").await
}

/// Cars whose payloads `payloads` makes, published to a service whose background fold does
/// not run: waits until they are stored and until scoring has settled (every car scored, or
/// no mark left to claim), and asserts that every car was scored.
async fn every_car_is_scored(payloads: impl Fn() -> Vec<Value>) {
    let (db, broker, dir) = (
        TestDb::new().await,
        TestBroker::start().await,
        tempfile::tempdir().unwrap(),
    );
    let service = scoring_service(&db, &broker, dir.path(), NO_BACKGROUND_FOLD_MS, 200).await;
    const CARS: usize = 12;
    let messages: Vec<(String, Bytes)> = (0..CARS)
        .flat_map(|i| payloads().into_iter().map(move |p| telemetry(&car(i), &p)))
        .collect();
    let pool = db.pool().await;
    let n = messages.len() as f64;
    publish(&broker, "scoring-fleet", messages).await;
    let handled = handled(&service, n, Duration::from_secs(60)).await;
    assert_eq!(handled.stored, n, "every message stored");
    wait_until(Duration::from_secs(60), "scoring settled", || async {
        scored_vehicles(&pool).await == CARS as i64
            || count(&pool, "SELECT count(*) FROM score_dirty").await == 0
    })
    .await;
    assert_eq!(
        scored_vehicles(&pool).await,
        CARS as i64,
        "every car with new data has a score"
    );
    assert!(
        count(&pool, "SELECT count(*) FROM rollup_delta").await == 0,
        "the scorer folded what it read"
    );
    let text = service.metrics.render();
    let released = |reason: &str| metric(&text, "aftercare_score_marks_released_total", reason);
    assert_eq!(released("no_recent_data"), 0.0);
    assert!(released("reason=\"scored\"") >= CARS as f64);
    service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_whose_history_ends_yesterday_is_scored_without_a_background_fold() {
    // A sample a day for the ten days up to yesterday.
    every_car_is_scored(|| {
        (0..10i64)
            .map(|d| {
                let ts = yesterday() - ChronoDuration::days(9 - d) + ChronoDuration::hours(12);
                sample(ts, d, 30_000.0 + 50.0 * d as f64)
            })
            .collect()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_and_forward_batches_from_a_week_ago_are_scored_without_a_background_fold() {
    // Back from a week without coverage: each car sends what it stored, hourly samples from
    // a week ago to yesterday evening, as arrays of a day each.
    every_car_is_scored(|| {
        (0..7i64)
            .map(|d| {
                let day = yesterday() - ChronoDuration::days(6 - d);
                let batch: Vec<Value> = (0..24i64)
                    .map(|h| {
                        let seq = d * 24 + h;
                        sample(
                            day + ChronoDuration::hours(h),
                            seq,
                            30_000.0 + seq as f64 * 2.0,
                        )
                    })
                    .collect();
                Value::Array(batch)
            })
            .collect()
    })
    .await;
}

/// Scoring and the background fold racing under a continuous stream of past days' data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scoring_and_folding_racing_under_a_stream_leave_no_car_unscored() {
    let soak = Duration::from_secs(
        std::env::var("AFTERCARE_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(15),
    );
    let (db, broker, dir) = (
        TestDb::new().await,
        TestBroker::start().await,
        tempfile::tempdir().unwrap(),
    );
    let service = scoring_service(&db, &broker, dir.path(), 300, 50).await;
    let pool = db.pool().await;

    // Each car sends a batch of five of yesterday's samples every 100 ms: only the rollup
    // has them for the scorer, never the raw part of today.
    const CARS: usize = 16;
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let url = broker.url();
    let publisher = tokio::spawn(async move {
        aftercare::simulator::publish_stream(&url, "scoring-soak-fleet", rx).await
    });
    let started = Instant::now();
    let mut last_sent: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut round = 0i64;
    let mut sent = 0u64;
    while started.elapsed() < soak {
        for i in 0..CARS {
            let batch: Vec<Value> = (0..5)
                .map(|k| {
                    let seq = round * 5 + k;
                    sample(
                        yesterday() + ChronoDuration::seconds(seq % 86_400),
                        seq,
                        30_000.0 + seq as f64 * 0.01,
                    )
                })
                .collect();
            tx.send(telemetry(&car(i), &Value::Array(batch)))
                .await
                .unwrap();
            last_sent.insert(car(i), Utc::now());
            sent += 1;
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(tx);
    let stats = publisher.await.unwrap().unwrap();
    assert_eq!(stats.acked, sent);
    let handled = handled(&service, sent as f64, Duration::from_secs(120)).await;
    assert_eq!(handled.stored, sent as f64);
    wait_until(Duration::from_secs(120), "every mark consumed", || async {
        count(&pool, "SELECT count(*) FROM score_dirty").await == 0
    })
    .await;

    // Every car's current score was computed after its last data was sent.
    let scored: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT v.vin, max(r.scored_at) FROM risk_current r JOIN vehicles v ON v.id = r.vehicle_id
         GROUP BY v.vin",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let scored: BTreeMap<String, DateTime<Utc>> = scored.into_iter().collect();
    for (vin, sent_at) in &last_sent {
        let at = scored.get(vin).copied();
        assert!(
            at.is_some_and(|at| at > *sent_at),
            "{vin}: last data sent at {sent_at}, scored at {at:?}"
        );
    }
    let text = service.metrics.render();
    assert_eq!(
        metric(
            &text,
            "aftercare_score_marks_released_total",
            "no_recent_data"
        ),
        0.0
    );
    service.shutdown().await.unwrap();
}

/// Stores telemetry samples through the ingest writer (marks and rollup deltas included).
async fn store_samples(store: &Store, vin: &str, days_ago: &[i64]) {
    let now = Utc::now();
    let items: Vec<_> = days_ago
        .iter()
        .enumerate()
        .map(|(seq, d)| {
            let ts = now - ChronoDuration::days(*d);
            batch_item(
                &format!("v1/vehicles/{vin}/telemetry"),
                &sample(ts, seq as i64 + 100 * d, 10_000.0 + seq as f64),
                now,
            )
        })
        .collect();
    store.write_batch(&items, WriteMethod::Copy).await.unwrap();
}

#[tokio::test]
async fn a_car_without_recent_data_keeps_its_mark_with_the_reason_until_new_data() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Store::open(pool.clone()).await.unwrap();
    let scorer = Scorer::new(constant_artifact("v1", 0.2)).unwrap();
    let cfg = worker_config(100);
    // Store-and-forward from long ago: forty-odd days old.
    store_samples(&store, &car(1), &[45, 44, 43]).await;
    let id: i32 = sqlx::query_scalar("SELECT id FROM vehicles WHERE vin = $1")
        .bind(car(1))
        .fetch_one(&pool)
        .await
        .unwrap();
    let round = worker::score_due(&pool, &scorer, &cfg).await.unwrap();
    assert_eq!(round.claimed, 1);
    assert_eq!(round.scored, 0);
    assert_eq!(round.unscored, vec![(id, Unscored::NoRecentData)]);
    assert_eq!(count(&pool, "SELECT count(*) FROM risk_current").await, 0);
    // The mark stays, saying why; it is not claimed again for the same data.
    let (reason, claimed): (Option<String>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT released_reason, claimed_until FROM score_dirty WHERE vehicle_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(reason.as_deref(), Some("no_recent_data"));
    assert_eq!(claimed, None);
    assert_eq!(
        worker::score_due(&pool, &scorer, &cfg).await.unwrap(),
        worker::Round::default()
    );
    // New data marks it again: claimed, scored, and the mark is gone.
    store_samples(&store, &car(1), &[1, 0]).await;
    let round = worker::score_due(&pool, &scorer, &cfg).await.unwrap();
    assert_eq!((round.claimed, round.scored), (1, 1));
    assert!(round.unscored.is_empty());
    assert_eq!(count(&pool, "SELECT count(*) FROM score_dirty").await, 0);
    assert!(count(&pool, "SELECT count(*) FROM risk_current").await > 0);
    // A mark that names no vehicle is kept as such.
    sqlx::query("INSERT INTO score_dirty (vehicle_id, marked_at) VALUES (987654, now())")
        .execute(&pool)
        .await
        .unwrap();
    let round = worker::score_due(&pool, &scorer, &cfg).await.unwrap();
    assert_eq!(round.unscored, vec![(987654, Unscored::NoVehicle)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folding_what_is_committed_waits_for_a_fold_in_flight() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Store::open(pool.clone()).await.unwrap();
    store_samples(&store, &car(1), &[3, 2]).await;
    store_samples(&store, &car(2), &[3, 2]).await;
    assert_eq!(count(&pool, "SELECT count(*) FROM rollup_delta").await, 2);
    // Another fold holds the oldest delta.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM rollup_delta ORDER BY id LIMIT 1 FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let folding = tokio::spawn({
        let pool = pool.clone();
        async move { aftercare::store::fold_committed(&pool).await }
    });
    wait_until(
        Duration::from_secs(20),
        "the fold waits on the lock",
        || async {
            count(
                &pool,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
               AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM rollup_delta%'",
            )
            .await
                == 1
        },
    )
    .await;
    assert!(!folding.is_finished(), "it does not pass over a held delta");
    holder.commit().await.unwrap();
    assert_eq!(folding.await.unwrap().unwrap(), 2);
    assert_eq!(count(&pool, "SELECT count(*) FROM rollup_delta").await, 0);
    assert_rollup_matches_raw(&pool).await;
}
