//! The batch write path against a real database: score marks, the daily rollup's deltas and
//! their fold (exact after redelivery, after a fold killed midway, with several folds at once),
//! and concurrent batches whose duplicates straddle two transactions in flight.

mod common;

use aftercare::config::WriteMethod;
use aftercare::simulator::Fleet;
use aftercare::store::{BatchItem, BatchResult, DeadLetter, Outcome, Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use common::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::BTreeSet;
use std::sync::Arc;

const V1: &str = "WDB1240221A000001";
const V2: &str = "WDB1240221A000002";
const V3: &str = "WDB1240221A000003";

fn t0() -> DateTime<Utc> {
    Utc::now() - Duration::hours(6)
}

/// One telemetry sample with two signals whose values follow from `seq`.
fn sample(vin: &str, seq: i64, t0: DateTime<Utc>, now: DateTime<Utc>) -> BatchItem {
    let payload = serde_json::json!({
        "ts": (t0 + Duration::seconds(seq)).to_rfc3339(), "seq": seq,
        "signals": {"Vehicle.Speed": seq as f64 * 1.5, "Vehicle.TraveledDistance": 1000.0 + seq as f64}
    });
    batch_item(&format!("v1/vehicles/{vin}/telemetry"), &payload, now)
}

fn report(vin: &str, seq: i64, t0: DateTime<Utc>, now: DateTime<Utc>) -> BatchItem {
    let payload = serde_json::json!({
        "ts": (t0 + Duration::seconds(seq)).to_rfc3339(), "seq": seq,
        "dtcs": [{"code": "P0301", "status": "pending"}]
    });
    batch_item(&format!("v1/vehicles/{vin}/dtc"), &payload, now)
}

fn dead_letter(now: DateTime<Utc>) -> BatchItem {
    BatchItem::DeadLetter {
        letter: DeadLetter {
            topic: format!("v1/vehicles/{V3}/telemetry"),
            payload: bytes::Bytes::from_static(b"not json"),
            reason: "invalid_json".into(),
            detail: "expected value".into(),
        },
        received_at: now,
    }
}

async fn write(store: &Store, items: &[BatchItem]) -> BatchResult {
    store.write_batch(items, WriteMethod::Copy).await.unwrap()
}

async fn marks(pool: &PgPool) -> Vec<(String, DateTime<Utc>)> {
    sqlx::query_as(
        "SELECT v.vin, m.marked_at FROM score_dirty m JOIN vehicles v ON v.id = m.vehicle_id
         ORDER BY v.vin",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn new_data_marks_its_vehicle_once_and_a_redelivery_leaves_the_mark_alone() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Store::open(pool.clone()).await.unwrap();
    let (t0, now) = (t0(), Utc::now());

    // Two samples of V1, a report of V2, a dead letter naming V3: V1 and V2 marked, once each.
    let first = vec![
        sample(V1, 1, t0, now),
        sample(V1, 2, t0, now),
        report(V2, 1, t0, now),
        dead_letter(now),
    ];
    let r = write(&store, &first).await;
    assert_eq!(r.samples_stored, 2);
    assert_eq!(r.dtc_reports_stored, 1);
    let after_first = marks(&pool).await;
    assert_eq!(
        after_first
            .iter()
            .map(|(v, _)| v.as_str())
            .collect::<Vec<_>>(),
        [V1, V2]
    );

    // The same batch again: nothing new, so no mark moves.
    let r = write(&store, &first).await;
    assert_eq!(
        r.outcomes,
        [
            Outcome::Duplicate,
            Outcome::Duplicate,
            Outcome::Duplicate,
            Outcome::DeadLetter
        ]
    );
    assert_eq!(marks(&pool).await, after_first);

    // A duplicate of V1 beside new data of V3 (the careful path): V3 marked, V1 untouched.
    let r = write(&store, &[sample(V1, 1, t0, now), sample(V3, 1, t0, now)]).await;
    assert_eq!(r.outcomes, [Outcome::Duplicate, Outcome::Stored]);
    assert!(r.stages.iter().any(|(s, _)| *s == "fast_failed"));
    let after_third = marks(&pool).await;
    assert_eq!(after_third.len(), 3);
    assert_eq!(after_third[..2], after_first[..]);
    assert_eq!(after_third[2].0, V3);

    // New data for V1 moves its mark forward, and only its mark.
    write(&store, &[sample(V1, 3, t0, now)]).await;
    let after_fourth = marks(&pool).await;
    assert!(after_fourth[0].1 > after_first[0].1);
    assert_eq!(after_fourth[1..], after_third[1..]);
}

#[tokio::test]
async fn rollup_is_exact_after_redelivery_and_colliding_samples() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Store::open(pool.clone()).await.unwrap();
    let now = Utc::now();
    let mut fleet = Fleet::new(5, 50, now - Duration::days(3));
    let items: Vec<BatchItem> = (0..3000)
        .map(|_| {
            let m = fleet.next_message();
            let payload: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            batch_item(&m.topic, &payload, now)
        })
        .collect();
    for chunk in items.chunks(500) {
        write(&store, chunk).await;
    }
    // Redelivered in chunks that straddle the first ones: every value is already stored.
    for chunk in items[250..].chunks(500) {
        let r = write(&store, chunk).await;
        assert_eq!(r.values_stored, 0);
    }
    // Two different samples (seq) at the same instant are two messages: both are kept, in
    // separate batches and within one batch, and a redelivery of either stores nothing.
    let t = t0();
    let speed = |seq: i64, v: f64| {
        batch_item(
            &format!("v1/vehicles/{V1}/telemetry"),
            &serde_json::json!({"ts": t.to_rfc3339(), "seq": seq, "signals": {"Vehicle.Speed": v}}),
            now,
        )
    };
    assert_eq!(write(&store, &[speed(1, 10.0)]).await.values_stored, 1);
    assert_eq!(write(&store, &[speed(2, 99.0)]).await.values_stored, 1);
    assert_eq!(write(&store, &[speed(2, 99.0)]).await.values_stored, 0);
    let r = write(&store, &[speed(3, 7.0), speed(4, 8.0)]).await;
    assert_eq!(r.values_stored, 2);
    assert_eq!(r.samples_stored, 2);
    let kept: Vec<f64> =
        sqlx::query_scalar("SELECT value FROM telemetry WHERE ts = $1 ORDER BY seq")
            .bind(t)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(kept, [10.0, 99.0, 7.0, 8.0]);

    store.fold_rollup_all().await.unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM rollup_delta").await, 0);
    assert_rollup_matches_raw(&pool).await;
    assert_eq!(
        count(&pool, "SELECT sum(n)::int8 FROM signal_daily").await,
        count(&pool, "SELECT count(*) FROM telemetry").await
    );
}

/// Row locks on one vehicle's rows of a table, held by an open transaction of another
/// session until released: whatever must update those rows stops there.
struct RowLock(PgConnection);

impl RowLock {
    async fn take(url: &str, table: &str, vin: &str) -> RowLock {
        let mut conn = PgConnection::connect(url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        let locked = sqlx::query(&format!(
            "SELECT 1 FROM {table} t JOIN vehicles v ON v.id = t.vehicle_id
             WHERE v.vin = $1 FOR UPDATE OF t"
        ))
        .bind(vin)
        .execute(&mut conn)
        .await
        .unwrap();
        assert!(
            locked.rows_affected() > 0,
            "{table} has rows of {vin} to lock"
        );
        RowLock(conn)
    }

    async fn release(mut self) {
        sqlx::query("ROLLBACK").execute(&mut self.0).await.unwrap();
    }
}

/// The pid of the backend in `db` waiting on a heavyweight lock in a statement starting with
/// `query_start`.
async fn waiting_backend(pool: &PgPool, query_start: &str) -> i32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query LIKE $1 || '%'",
        )
        .bind(query_start)
        .fetch_optional(pool)
        .await
        .unwrap();
        if let Some(pid) = pid {
            return pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no backend came to wait in {query_start}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Kills a backend and waits until it is gone: until then its locks stand, and a `SKIP
/// LOCKED` fold would pass over the rows it held.
async fn terminate(pool: &PgPool, pid: i32) {
    let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 60000)")
        .bind(pid)
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fold_killed_midway_folds_nothing_and_the_next_fold_is_exact() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Store::open(pool.clone()).await.unwrap();
    let (t0, now) = (t0(), Utc::now());
    write(&store, &[sample(V1, 1, t0, now), sample(V2, 1, t0, now)]).await;
    store.fold_rollup_all().await.unwrap();
    for seq in 2..12 {
        write(
            &store,
            &[sample(V1, seq, t0, now), sample(V2, seq, t0, now)],
        )
        .await;
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM rollup_delta").await, 10);

    // Hold a rollup row the fold must update, so the fold stops midway: deltas deleted in its
    // transaction, nothing added yet. Then kill its backend.
    let hold = RowLock::take(&db.url, "signal_daily", V2).await;
    let folding = {
        let store = Store::open(db.pool().await).await.unwrap();
        tokio::spawn(async move { store.fold_rollup(100).await })
    };
    let pid = waiting_backend(&pool, "INSERT INTO signal_daily").await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM rollup_delta").await,
        10,
        "the fold's deletes are not visible before it commits"
    );
    terminate(&pool, pid).await;
    let killed = folding.await.unwrap();
    assert!(killed.is_err(), "{killed:?}");
    hold.release().await;

    assert_eq!(count(&pool, "SELECT count(*) FROM rollup_delta").await, 10);
    assert_eq!(store.fold_rollup_all().await.unwrap(), 10);
    assert_rollup_matches_raw(&pool).await;
    assert_eq!(
        count(&pool, "SELECT sum(n)::int8 FROM signal_daily").await,
        2 * 11 * 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_folds_at_once_add_every_delta_exactly_once() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Store::open(pool.clone()).await.unwrap();
    let now = Utc::now();
    let mut fleet = Fleet::new(9, 30, now - Duration::days(2));
    for _ in 0..60 {
        let items: Vec<BatchItem> = (0..40)
            .map(|_| {
                let m = fleet.next_message();
                batch_item(&m.topic, &serde_json::from_slice(&m.payload).unwrap(), now)
            })
            .collect();
        write(&store, &items).await;
    }
    let deltas = count(&pool, "SELECT count(*) FROM rollup_delta").await;
    assert_eq!(deltas, 60);
    // Two instances (own pools), two folders each, taking a few deltas at a time.
    let instances = [
        Arc::new(Store::open(db.pool().await).await.unwrap()),
        Arc::new(Store::open(db.pool().await).await.unwrap()),
    ];
    let mut folders = Vec::new();
    for store in instances.iter().chain(instances.iter()) {
        let store = store.clone();
        folders.push(tokio::spawn(async move {
            let mut folded = 0;
            loop {
                match store.fold_rollup(3).await? {
                    0 => return Ok::<u64, StoreError>(folded),
                    n => folded += n,
                }
            }
        }));
    }
    let mut total = 0;
    for f in folders {
        total += f.await.unwrap().unwrap();
    }
    assert_eq!(total, 60);
    assert_eq!(count(&pool, "SELECT count(*) FROM rollup_delta").await, 0);
    assert_rollup_matches_raw(&pool).await;
}

struct Straddled {
    _db: TestDb,
    pool: PgPool,
    /// Batch A, to write again.
    a: Vec<BatchItem>,
    first: Result<BatchResult, StoreError>,
    second: BatchResult,
}

/// Batch A (V1 seq 1..=10, then V2) is held in flight at its last statement; batch B (V1 seq
/// 5..=15) starts meanwhile and waits on A's ledger keys. If `abort_first`, A's backend is
/// killed while both are in flight. Returns what each stored.
async fn straddle(abort_first: bool) -> Straddled {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Arc::new(Store::open(pool.clone()).await.unwrap());
    let (t0, now) = (t0(), Utc::now());
    // V2 gets a mark to hold on to.
    write(&store, &[sample(V2, 100, t0, now)]).await;
    let a: Vec<BatchItem> = (1..=10)
        .map(|s| sample(V1, s, t0, now))
        .chain([sample(V2, 101, t0, now)])
        .collect();
    let b: Vec<BatchItem> = (5..=15).map(|s| sample(V1, s, t0, now)).collect();

    let hold = RowLock::take(&db.url, "score_dirty", V2).await;
    let first = {
        let (store, a) = (store.clone(), a.clone());
        tokio::spawn(async move { store.write_batch(&a, WriteMethod::Copy).await })
    };
    let a_pid = waiting_backend(&pool, "INSERT INTO score_dirty").await;
    let second = {
        let store = store.clone();
        tokio::spawn(async move { store.write_batch(&b, WriteMethod::Copy).await })
    };
    waiting_backend(&pool, "COPY samples").await;
    if abort_first {
        terminate(&pool, a_pid).await;
    }
    hold.release().await;
    Straddled {
        first: first.await.unwrap(),
        second: second.await.unwrap().unwrap(),
        _db: db,
        pool,
        a,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_straddling_two_batches_in_flight_are_stored_once_when_the_first_commits() {
    let Straddled {
        _db,
        pool,
        first,
        second,
        ..
    } = straddle(false).await;
    let first = first.unwrap();
    assert_eq!(first.samples_stored, 11);
    assert!(first.outcomes.iter().all(|o| *o == Outcome::Stored));
    // B waited for A, found seq 5..=10 taken, and wrote the rest carefully.
    let mut want = vec![Outcome::Duplicate; 6];
    want.extend([Outcome::Stored; 5]);
    assert_eq!(second.outcomes, want);
    assert!(second.stages.iter().any(|(s, _)| *s == "fast_failed"));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM samples").await,
        1 + 11 + 5
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM telemetry").await, 2 * 17);
    let store = Store::open(pool.clone()).await.unwrap();
    store.fold_rollup_all().await.unwrap();
    assert_rollup_matches_raw(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_straddling_two_batches_in_flight_are_stored_once_when_the_first_dies() {
    let Straddled {
        _db,
        pool,
        a,
        first,
        second,
    } = straddle(true).await;
    assert!(first.is_err(), "A's backend was killed");
    // A never committed, so B stored all of its samples the fast way.
    assert_eq!(second.outcomes, vec![Outcome::Stored; 11]);
    // A comes back (as the writer retries it): only what B did not store is new.
    let store = Store::open(pool.clone()).await.unwrap();
    let retried = write(&store, &a).await;
    let mut want = vec![Outcome::Stored; 4];
    want.extend([Outcome::Duplicate; 6]);
    want.push(Outcome::Stored);
    assert_eq!(retried.outcomes, want);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM samples").await,
        1 + 15 + 1
    );
    store.fold_rollup_all().await.unwrap();
    assert_rollup_matches_raw(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_with_shuffled_overlaps_store_everything_once_without_deadlock() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Arc::new(Store::open(pool.clone()).await.unwrap());
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let (t0, now) = (t0(), Utc::now());
    let vins: Vec<String> = (0..8).map(|i| format!("WDB1240221A1{i:05}")).collect();
    let mut all = BTreeSet::new();
    for round in 0..12i64 {
        // 64 messages per round: samples and reports of 8 vehicles; each batch takes a random
        // two thirds of them, in its own random order.
        let pool_items: Vec<(String, i64, bool)> = (0..64)
            .map(|i| {
                (
                    vins[i % 8].clone(),
                    round * 100 + i as i64,
                    rng.gen_bool(0.2),
                )
            })
            .collect();
        let mut pick = || {
            let mut v: Vec<&(String, i64, bool)> = pool_items
                .iter()
                .filter(|_| rng.gen_bool(2.0 / 3.0))
                .collect();
            v.shuffle(&mut rng);
            v
        };
        let (a, b) = (pick(), pick());
        let items = |picked: &[&(String, i64, bool)]| -> Vec<BatchItem> {
            picked
                .iter()
                .map(|(vin, seq, is_report)| {
                    if *is_report {
                        report(vin, *seq, t0, now)
                    } else {
                        sample(vin, *seq, t0, now)
                    }
                })
                .collect()
        };
        let union: BTreeSet<(String, i64, bool)> =
            a.iter().chain(b.iter()).map(|t| (*t).clone()).collect();
        all.extend(union.iter().cloned());
        let (ia, ib) = (items(&a), items(&b));
        let (sa, sb) = (store.clone(), store.clone());
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { sa.write_batch(&ia, WriteMethod::Copy).await }),
            tokio::spawn(async move { sb.write_batch(&ib, WriteMethod::Copy).await }),
        );
        let (ra, rb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
        let stored = |r: &BatchResult| r.outcomes.iter().filter(|o| **o == Outcome::Stored).count();
        assert_eq!(
            stored(&ra) + stored(&rb),
            union.len(),
            "round {round}: every message stored by exactly one batch"
        );
    }
    let want_reports = all.iter().filter(|(.., is_report)| *is_report).count() as i64;
    let samples = count(&pool, "SELECT count(*) FROM samples").await;
    let reports = count(&pool, "SELECT count(*) FROM dtc_reports").await;
    assert_eq!(reports, want_reports);
    assert_eq!(samples, all.len() as i64 - want_reports);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM telemetry").await,
        2 * samples
    );
    assert_eq!(
        count(&pool, "SELECT sum(reports)::int8 FROM dtcs").await,
        reports
    );
    store.fold_rollup_all().await.unwrap();
    assert_rollup_matches_raw(&pool).await;
}

#[tokio::test]
async fn a_report_naming_one_code_twice_is_written_the_careful_way() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Store::open(pool.clone()).await.unwrap();
    let now = Utc::now();
    let payload = serde_json::json!({
        "ts": t0().to_rfc3339(), "seq": 1,
        "dtcs": [{"code": "P0301", "status": "pending"}, {"code": "P0301", "status": "confirmed"}]
    });
    let item = batch_item(&format!("v1/vehicles/{V1}/dtc"), &payload, now);
    let r = write(&store, &[item, sample(V1, 2, t0(), now)]).await;
    assert_eq!(r.outcomes, [Outcome::Stored, Outcome::Stored]);
    assert!(r.stages.iter().any(|(s, _)| *s == "fast_failed"));
    assert_eq!(count(&pool, "SELECT count(*) FROM dtc_reports").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM dtc_events").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 1);
}
