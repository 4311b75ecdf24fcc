//! Ingest through a real broker into a real database: counts, lifecycles, duplicates.

mod common;

use aftercare::simulator::{owned, Fleet, Generated, Kind};
use chrono::{DateTime, Duration, Utc};
use common::*;
use std::collections::{BTreeMap, HashSet};

fn fleet_messages(seed: u64, vehicles: usize, n: usize) -> Vec<Generated> {
    let mut fleet = Fleet::new(seed, vehicles, Utc::now() - Duration::days(2));
    (0..n).map(|_| fleet.next_message()).collect()
}

/// Expected DTC lifecycle per (vin, code) computed independently from the published payloads.
#[derive(Debug, Default, PartialEq)]
struct ExpectedLifecycle {
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    cleared_at: Option<DateTime<Utc>>,
    reports: i32,
}

fn expected_lifecycles(messages: &[Generated]) -> BTreeMap<(String, String), ExpectedLifecycle> {
    let mut out: BTreeMap<(String, String), ExpectedLifecycle> = BTreeMap::new();
    for m in messages.iter().filter(|m| m.kind == Kind::Dtc) {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let ts = DateTime::from_timestamp_millis(v["ts"].as_i64().unwrap()).unwrap();
        for d in v["dtcs"].as_array().unwrap() {
            let code = match d["code"].as_str() {
                Some(c) => c.to_owned(),
                None => format!("SPN{}-FMI{}", d["spn"], d["fmi"]),
            };
            let e = out.entry((m.vin.clone(), code)).or_default();
            e.reports += 1;
            if d["status"] == "cleared" {
                e.cleared_at = e.cleared_at.max(Some(ts));
            } else {
                e.first_seen = Some(e.first_seen.map_or(ts, |f| f.min(ts)));
                e.last_seen = e.last_seen.max(Some(ts));
            }
        }
    }
    out
}

type Ts = Option<DateTime<Utc>>;
type LifecycleRow = (String, String, Ts, Ts, Ts, i32);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_messages_are_stored_exactly() {
    let db = TestDb::new().await;
    let broker = TestBroker::start().await;
    let service = start_connected(config(&db.url, &broker.url(), "ingest-a")).await;

    let messages = fleet_messages(7, 200, 10_000);
    assert!(messages.iter().any(|m| m.kind == Kind::TelemetryBatch));
    assert!(messages.iter().any(|m| m.kind == Kind::Dtc));
    publish(&broker, "pub-1", owned(&messages)).await;

    let h = handled(&service, 10_000.0, std::time::Duration::from_secs(120)).await;
    assert_eq!((h.stored, h.duplicate, h.dead_letter), (10_000.0, 0.0, 0.0));
    let text = service.metrics.render();

    let pool = db.pool().await;
    let samples: usize = messages.iter().map(|m| m.samples).sum();
    let values: usize = messages.iter().map(|m| m.values).sum();
    let reports = messages.iter().filter(|m| m.kind == Kind::Dtc).count();
    let dtc_entries: usize = messages.iter().map(|m| m.dtcs).sum();
    let vins: HashSet<&str> = messages.iter().map(|m| m.vin.as_str()).collect();
    assert_eq!(
        count(&pool, "SELECT count(*) FROM samples").await,
        samples as i64
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM telemetry").await,
        values as i64
    );
    assert_eq!(
        metric(&text, "aftercare_ingest_values_total", ""),
        values as f64
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM dtc_reports").await,
        reports as i64
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM dtc_events").await,
        dtc_entries as i64
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM vehicles").await,
        vins.len() as i64
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM dead_letters").await, 0);
    // The daily rollup accounts for every value exactly once.
    rollup_settled(&pool).await;
    assert_eq!(
        count(&pool, "SELECT sum(n)::int8 FROM signal_daily").await,
        values as i64
    );
    assert_rollup_matches_raw(&pool).await;

    // Lifecycles match what an independent reading of the payloads says.
    let expected = expected_lifecycles(&messages);
    let rows: Vec<LifecycleRow> = sqlx::query_as(
        "SELECT v.vin, d.code, d.first_seen, d.last_seen, d.cleared_at, d.reports
             FROM dtcs d JOIN vehicles v ON v.id = d.vehicle_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), expected.len());
    for (vin, code, first_seen, last_seen, cleared_at, reports) in rows {
        let want = &expected[&(vin.clone(), code.clone())];
        assert_eq!(
            ExpectedLifecycle {
                first_seen,
                last_seen,
                cleared_at,
                reports
            },
            *want,
            "{vin} {code}"
        );
    }
    service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_and_overlapping_messages_are_stored_once() {
    let db = TestDb::new().await;
    let broker = TestBroker::start().await;
    let service = start_connected(config(&db.url, &broker.url(), "ingest-b")).await;
    let vin = "WDB1240221A000001";
    let topic = format!("v1/vehicles/{vin}/telemetry");
    let t0 = Utc::now() - Duration::hours(1);
    let sample = |seq: i64| {
        serde_json::json!({
            "ts": (t0 + Duration::seconds(seq)).to_rfc3339(),
            "seq": seq,
            "signals": {"Vehicle.Speed": seq as f64, "Vehicle.TraveledDistance": 1000.0 + seq as f64}
        })
    };
    let single = serde_json::to_vec(&sample(100)).unwrap();
    let batch_a = serde_json::to_vec(&(1..=10).map(sample).collect::<Vec<_>>()).unwrap();
    let batch_b = serde_json::to_vec(&(6..=15).map(sample).collect::<Vec<_>>()).unwrap();
    let dtc_topic = format!("v1/vehicles/{vin}/dtc");
    let dtc = serde_json::to_vec(&serde_json::json!({
        "ts": t0.timestamp_millis(), "seq": 500, "dtcs": [{"code": "P0301", "status": "pending"}]
    }))
    .unwrap();
    // Every message twice, the batches overlapping on seq 6..10.
    let msgs: Vec<(&str, &[u8])> = vec![
        (&topic, &single),
        (&topic, &single),
        (&topic, &batch_a),
        (&topic, &batch_b),
        (&topic, &batch_a),
        (&dtc_topic, &dtc),
        (&dtc_topic, &dtc),
    ];
    publish(&broker, "pub-dup", common::owned(&msgs)).await;
    let h = handled(&service, 7.0, std::time::Duration::from_secs(30)).await;
    let pool = db.pool().await;
    let dl: Vec<(String, String)> = sqlx::query_as("SELECT reason, detail FROM dead_letters")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(dl.is_empty(), "{dl:?}");
    assert_eq!((h.stored, h.duplicate), (4.0, 3.0), "{h:?}");
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 16);
    assert_eq!(count(&pool, "SELECT count(*) FROM telemetry").await, 32);
    rollup_settled(&pool).await;
    assert_eq!(
        count(&pool, "SELECT sum(n)::int8 FROM signal_daily").await,
        32
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM dtc_events").await, 1);
    assert_eq!(count(&pool, "SELECT reports::int8 FROM dtcs").await, 1);
    service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_straddling_pipelined_batches_are_stored_once_and_all_acknowledged() {
    let db = TestDb::new().await;
    let broker = TestBroker::start().await;
    let mut cfg = config(&db.url, &broker.url(), "ingest-pipelined");
    // Small batches, two in flight: a message and its copy four places later land in the
    // same batch or in two batches written at the same time.
    cfg.ingest.batch_max_messages = 8;
    cfg.ingest.writers = 2;
    let service = start_connected(cfg.clone()).await;
    let t0 = Utc::now() - Duration::hours(2);
    let vins: Vec<String> = (0..5).map(|i| format!("WDB1240221A2{i:05}")).collect();
    let originals: Vec<(String, Vec<u8>)> = (0..400i64)
        .map(|i| {
            let vin = &vins[i as usize % vins.len()];
            let payload = serde_json::json!({
                "ts": (t0 + Duration::seconds(i)).to_rfc3339(), "seq": i,
                "signals": {"Vehicle.Speed": i as f64, "Vehicle.TraveledDistance": 10.0 * i as f64}
            });
            (
                format!("v1/vehicles/{vin}/telemetry"),
                serde_json::to_vec(&payload).unwrap(),
            )
        })
        .collect();
    let mut stream: Vec<(&str, &[u8])> = Vec::new();
    for i in 0..originals.len() + 4 {
        if let Some((t, p)) = originals.get(i) {
            stream.push((t, p));
        }
        if let Some((t, p)) = i.checked_sub(4).and_then(|j| originals.get(j)) {
            stream.push((t, p));
        }
    }
    assert_eq!(stream.len(), 800);
    publish(&broker, "pub-pipelined", common::owned(&stream)).await;
    let h = handled(&service, 800.0, std::time::Duration::from_secs(60)).await;
    assert_eq!((h.stored, h.duplicate), (400.0, 400.0));
    let text = service.metrics.render();
    assert!(
        metric(&text, "aftercare_ingest_batch_messages_count", "") >= 100.0,
        "small batches, as configured"
    );
    let pool = db.pool().await;
    assert_eq!(count(&pool, "SELECT count(*) FROM samples").await, 400);
    assert_eq!(count(&pool, "SELECT count(*) FROM telemetry").await, 800);
    assert_eq!(count(&pool, "SELECT count(*) FROM score_dirty").await, 5);
    rollup_settled(&pool).await;
    assert_rollup_matches_raw(&pool).await;
    service.shutdown().await.unwrap();

    // Every message was acknowledged: the resumed session has nothing to redeliver, so a new
    // message published now is the first and only one to arrive (the broker's queue is FIFO).
    let service = start_connected(cfg).await;
    let sentinel = serde_json::to_vec(&serde_json::json!({
        "ts": t0.to_rfc3339(), "seq": 10_000, "signals": {"Vehicle.Speed": 1.0}
    }))
    .unwrap();
    let topic = format!("v1/vehicles/{}/telemetry", vins[0]);
    publish(
        &broker,
        "pub-sentinel",
        common::owned(&[(&topic, &sentinel)]),
    )
    .await;
    let h = handled(&service, 1.0, std::time::Duration::from_secs(30)).await;
    assert_eq!((h.received, h.stored), (1.0, 1.0));
    service.shutdown().await.unwrap();
}
