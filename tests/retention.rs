//! Time partitions and retention: partitions (plain PostgreSQL) or chunks (TimescaleDB) of the
//! width the policy says, old ones dropped past retention while newer data stays, the rollup
//! and dead letters expiring, a late message for a dropped day dead-lettered with its own
//! reason, and the storage policy recorded in the database followed by every process. Each
//! flavour is held to what it promises: the service's partitions on plain PostgreSQL,
//! TimescaleDB's chunks and its own policies elsewhere.

mod common;

use aftercare::config::WriteMethod;
use aftercare::store::retention::{self, StoragePolicy};
use aftercare::store::{BatchItem, Flavor, Store};
use chrono::{DateTime, Duration, DurationRound, Utc};
use common::*;
use sqlx::PgPool;

/// Partitions of `parent` as (lower, upper) bounds, in order.
async fn partitions(pool: &PgPool, parent: &str) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    sqlx::query_as("SELECT lo, hi FROM aftercare_partitions WHERE parent = $1 ORDER BY lo")
        .bind(parent)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Partitions PostgreSQL itself attaches to `parent`.
async fn attached(pool: &PgPool, parent: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_inherits WHERE inhparent = $1::regclass")
        .bind(parent)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn sample(vin: &str, seq: i64, ts: DateTime<Utc>, now: DateTime<Utc>) -> BatchItem {
    batch_item(
        &format!("v1/vehicles/{vin}/telemetry"),
        &serde_json::json!({"ts": ts.to_rfc3339(), "seq": seq, "signals": {"Vehicle.Speed": seq as f64}}),
        now,
    )
}

/// The chunk interval TimescaleDB keeps for a hypertable.
async fn chunk_interval(pool: &PgPool, table: &str) -> String {
    sqlx::query_scalar(
        "SELECT time_interval::text FROM timescaledb_information.dimensions
         WHERE hypertable_name = $1",
    )
    .bind(table)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn partitions_cover_today_and_the_days_ahead_and_none_the_empty_past() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let now = Utc::now();
    let policy = retention::read_policy(&pool).await.unwrap();
    assert_eq!(policy, StoragePolicy::default());
    if Flavor::detect(&pool).await.unwrap() != Flavor::Plain {
        // TimescaleDB makes chunks itself, of the policy's width.
        assert_eq!(chunk_interval(&pool, "samples").await, "90 days");
        assert_eq!(chunk_interval(&pool, "dtc_events").await, "90 days");
        return;
    }
    for (parent, width) in [("samples", 90), ("dtc_reports", 90), ("dtc_events", 90)] {
        let parts = partitions(&pool, parent).await;
        assert_eq!(
            parts.len() as i64,
            attached(&pool, parent).await,
            "{parent}"
        );
        // Contiguous, each as wide as the policy says, aligned to the epoch.
        for w in parts.windows(2) {
            assert_eq!(w[0].1, w[1].0, "{parent}: no gap");
        }
        for (lo, hi) in &parts {
            assert_eq!(*hi - *lo, Duration::days(width), "{parent}");
            assert_eq!(lo.timestamp() % (width * 86_400), 0, "{parent}: aligned");
        }
        let (first, last) = (parts[0].0, parts[parts.len() - 1].1);
        assert!(
            first <= now && now < first + Duration::days(width),
            "{parent}: from the partition holding now, none behind it"
        );
        assert!(
            last >= now + Duration::days(14),
            "{parent}: the coming days exist"
        );
    }
}

#[tokio::test]
async fn old_partitions_go_past_retention_and_newer_data_stays() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Store::open(pool.clone()).await.unwrap();
    let flavor = Flavor::detect(&pool).await.unwrap();
    let now = Utc::now();
    // A month of retention, two-day partitions.
    let policy = StoragePolicy {
        chunk_days: 2,
        dtc_chunk_days: 2,
        retention_days: 30,
        dtc_retention_days: 30,
        dead_letter_retention_days: 10,
        ..StoragePolicy::default()
    };
    assert!(retention::apply_policy(&pool, flavor, &policy)
        .await
        .unwrap());
    // A sample a day from 60 days ago up to now (the partitions made under the old policy
    // hold them), a dead letter 20 days old and a fresh one, and the rollup folded.
    let vin = "WDB1240221A000777";
    let items: Vec<BatchItem> = (0..60)
        .map(|d| {
            sample(
                vin,
                d,
                now - Duration::days(60 - d) + Duration::minutes(1),
                now,
            )
        })
        .collect();
    store.write_batch(&items, WriteMethod::Copy).await.unwrap();
    store.fold_rollup_all().await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO dead_letters (digest, topic, payload, payload_size, truncated, reason, detail,
                                   first_received, last_received, deliveries)
         VALUES ('\\x01', 't', '\\x00', 1, false, 'invalid_json', 'x', now() - interval '20 days',
                 now() - interval '20 days', 1),
                ('\\x02', 't', '\\x00', 1, false, 'invalid_json', 'x', now(), now(), 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 60);

    let done = retention::maintain(&pool, flavor, now).await.unwrap();
    if flavor == (Flavor::Timescale { tsl: true }) {
        // TimescaleDB's own retention policy drops chunks there: run it now.
        sqlx::raw_sql(
            "DO $$ DECLARE j integer; BEGIN
                 SELECT job_id INTO j FROM timescaledb_information.jobs
                 WHERE proc_name = 'policy_retention' AND hypertable_name = 'samples';
                 CALL run_job(j);
             END $$",
        )
        .execute(&pool)
        .await
        .unwrap();
    }
    let cutoff = now - Duration::days(30);
    // Nothing older than the partition (or chunk) holding the cutoff is left, and every
    // sample of the last 30 days is intact.
    let oldest: DateTime<Utc> = sqlx::query_scalar("SELECT min(ts) FROM samples")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        oldest > cutoff - Duration::days(7),
        "{oldest} stayed past {cutoff}"
    );
    let recent = count(
        &pool,
        &format!(
            "SELECT count(*) FROM samples WHERE ts >= '{}'",
            cutoff.to_rfc3339()
        ),
    )
    .await;
    assert_eq!(recent, 30);
    if flavor == Flavor::Plain {
        // Whole partitions below the cutoff are gone; the one straddling it stays whole.
        let parts = partitions(&pool, "samples").await;
        assert!(parts.iter().all(|(_, hi)| *hi > cutoff));
        assert!(
            parts[0].0 <= cutoff,
            "the partition holding the cutoff stays"
        );
        assert!(done.partitions_dropped > 0);
        assert_eq!(parts.len() as i64, attached(&pool, "samples").await);
        assert!(oldest >= parts[0].0);
        // Partitions still reach ahead.
        assert!(parts[parts.len() - 1].1 >= now + Duration::days(14));
    } else {
        assert_eq!(chunk_interval(&pool, "samples").await, "2 days");
    }
    // The rollup and dead letters expired by age.
    let old_days: i64 = sqlx::query_scalar("SELECT count(*) FROM signal_daily WHERE day < $1")
        .bind(cutoff)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(old_days, 0);
    assert!(done.rollup_rows_deleted > 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM dead_letters").await, 1);
    assert_eq!(done.dead_letters_deleted, 1);
    // A second round changes nothing.
    let again = retention::maintain(&pool, flavor, now).await.unwrap();
    assert_eq!(again, retention::Maintenance::default());
}

#[tokio::test]
async fn a_late_message_for_a_dropped_day_is_dead_lettered_with_its_own_reason() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let broker = TestBroker::start().await;
    let mut config = config(&db.url, &broker.url(), "retention-late");
    config.storage.retention_days = 30;
    let service = start_connected(config).await;
    let vin = "WDB1240221A000778";
    let topic = format!("v1/vehicles/{vin}/telemetry");
    let old = (Utc::now() - Duration::days(45))
        .duration_trunc(Duration::seconds(1))
        .unwrap();
    let fresh = Utc::now() - Duration::hours(1);
    let body = |ts: DateTime<Utc>, seq: i64| {
        serde_json::json!({"ts": ts.to_rfc3339(), "seq": seq, "signals": {"Vehicle.Speed": 1.0}})
            .to_string()
    };
    publish(
        &broker,
        "retention-pub",
        vec![
            (topic.clone(), body(old, 1).into()),
            (topic.clone(), body(fresh, 2).into()),
        ],
    )
    .await;
    let h = handled(&service, 2.0, std::time::Duration::from_secs(20)).await;
    assert_eq!((h.stored, h.dead_letter), (1.0, 1.0));
    let (reason, detail): (String, String) =
        sqlx::query_as("SELECT reason, detail FROM dead_letters")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(reason, "past_retention");
    assert!(detail.contains("retention"), "{detail}");
    let text = service.metrics.render();
    assert_eq!(
        metric(
            &text,
            "aftercare_dead_letters_total",
            "reason=\"past_retention\""
        ),
        1.0
    );
    // The service recorded its policy for every process.
    assert_eq!(
        retention::read_policy(&pool).await.unwrap().retention_days,
        30
    );
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_missing_partition_is_made_by_the_writer_rather_than_refusing_the_batch() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Store::open(pool.clone()).await.unwrap();
    let now = Utc::now();
    if Flavor::detect(&pool).await.unwrap() != Flavor::Plain {
        // TimescaleDB makes the chunk of any instant on its own.
        let r = store
            .write_batch(
                &[sample(
                    "WDB1240221A000779",
                    1,
                    now - Duration::days(400),
                    now,
                )],
                WriteMethod::Copy,
            )
            .await
            .unwrap();
        assert_eq!(r.samples_stored, 1);
        return;
    }
    // Maintenance fell behind: the partition for this hour is gone.
    let part: String = sqlx::query_scalar(
        "SELECT name FROM aftercare_partitions WHERE parent = 'samples' AND lo <= $1 AND $1 < hi",
    )
    .bind(now)
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(&format!("DROP TABLE {part}"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM aftercare_partitions WHERE name = $1")
        .bind(&part)
        .execute(&pool)
        .await
        .unwrap();
    let r = store
        .write_batch(
            &[sample(
                "WDB1240221A000779",
                1,
                now - Duration::minutes(5),
                now,
            )],
            WriteMethod::Copy,
        )
        .await
        .unwrap();
    assert_eq!(r.samples_stored, 1);
    assert!(r.stages.iter().any(|(s, _)| *s == "partitions"));
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 1);
}
