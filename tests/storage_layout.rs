//! Storage layout 2 (one row per sample, values as arrays) and the move to it on a live
//! database: a fleet stored by the old layout is migrated while ingest writes, and every read
//! answer and every car's model features are the same before, during and after the move.

mod common;

use aftercare::config::WriteMethod;
use aftercare::model::{dataset, features};
use aftercare::simulator::engine::{simulate_range, weather};
use aftercare::store::read::{self, TelemetryQuery};
use aftercare::store::{history, relayout, BatchItem, Outcome, Store};
use aftercare::wire::{parse_message, Limits, Message};
use chrono::{DateTime, Duration, DurationRound, Utc};
use common::*;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};

/// A delivery as ingest receives it.
struct Delivery {
    vin: String,
    topic: String,
    payload: Vec<u8>,
}

/// Writes `messages` into the tables of layout 1 the way the previous build's writer did:
/// the first copy of a sample key enters the ledger, the first value of a (vehicle, signal,
/// ts) is kept, and the daily rollup is what folding those values gives.
async fn store_as_layout_1(pool: &PgPool, messages: &[&Delivery], now: DateTime<Utc>) {
    let mut ledger: BTreeMap<(String, i64, DateTime<Utc>), i32> = BTreeMap::new();
    let mut values: BTreeMap<(String, String, DateTime<Utc>), f64> = BTreeMap::new();
    for d in messages {
        let Ok(Message::Telemetry { vin, samples }) =
            parse_message(&d.topic, &d.payload, now, &Limits::default())
        else {
            continue;
        };
        for s in samples {
            ledger
                .entry((vin.as_str().to_owned(), s.seq, s.ts))
                .or_insert(s.values.len() as i32);
            for (name, x) in s.values {
                values
                    .entry((vin.as_str().to_owned(), name, s.ts))
                    .or_insert(x);
            }
        }
    }
    let vins: Vec<String> = ledger.keys().map(|k| k.0.clone()).collect();
    let names: Vec<String> = values.keys().map(|k| k.1.clone()).collect();
    sqlx::query("INSERT INTO vehicles (vin) SELECT DISTINCT v FROM UNNEST($1::text[]) v ON CONFLICT DO NOTHING")
        .bind(&vins)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO signals (name) SELECT DISTINCT n FROM UNNEST($1::text[]) n ORDER BY 1 ON CONFLICT DO NOTHING")
        .bind(&names)
        .execute(pool)
        .await
        .unwrap();
    let rows: Vec<_> = ledger.into_iter().collect();
    for chunk in rows.chunks(5_000) {
        sqlx::query(
            "INSERT INTO samples (vehicle_id, seq, ts, received_at, n_values)
             SELECT v.id, k.s, k.t, k.t, k.n
             FROM UNNEST($1::text[], $2::int8[], $3::timestamptz[], $4::int4[]) AS k (vin, s, t, n)
             JOIN vehicles v ON v.vin = k.vin",
        )
        .bind(chunk.iter().map(|r| r.0 .0.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.0 .1).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.0 .2).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.1).collect::<Vec<_>>())
        .execute(pool)
        .await
        .unwrap();
    }
    let rows: Vec<_> = values.into_iter().collect();
    for chunk in rows.chunks(20_000) {
        sqlx::query(
            "INSERT INTO telemetry (vehicle_id, signal_id, ts, value)
             SELECT v.id, s.id, k.t, k.x
             FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::float8[]) AS k (vin, name, t, x)
             JOIN vehicles v ON v.vin = k.vin JOIN signals s ON s.name = k.name",
        )
        .bind(chunk.iter().map(|r| r.0 .0.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.0 .1.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.0 .2).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.1).collect::<Vec<_>>())
        .execute(pool)
        .await
        .unwrap();
    }
    // The rollup as that build kept it: a table it folded into, or (TimescaleDB's licensed
    // build) a continuous aggregate, refreshed here over everything.
    let aggregate: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'signal_daily' AND relkind = 'v')",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let rollup = if aggregate {
        "CALL refresh_continuous_aggregate('signal_daily', NULL, NULL)"
    } else {
        "INSERT INTO signal_daily (vehicle_id, signal_id, day, n, min, max, sum, sumsq)
         SELECT vehicle_id, signal_id, date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '2000-01-01'),
                count(*), min(value), max(value), sum(value), sum(value * value)
         FROM telemetry GROUP BY 1, 2, 3"
    };
    sqlx::raw_sql(rollup).execute(pool).await.unwrap();
}

/// Every read the API and the model make of a vehicle, as text: raw values, hourly and daily
/// buckets, latest values, and its features at midnight (exact) and now.
async fn answers(
    pool: &PgPool,
    vehicle_id: i32,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (String, Vec<f64>) {
    let q = TelemetryQuery {
        vehicle_id,
        signal: None,
        from,
        to: now + Duration::days(1),
        after: None,
        limit: 1_000_000,
    };
    let (points, _) = read::telemetry(pool, &q).await.unwrap();
    let one = TelemetryQuery {
        signal: read::signal_ref(pool, "Vehicle.TraveledDistance")
            .await
            .unwrap(),
        ..q
    };
    let (odometer, _) = read::telemetry(pool, &one).await.unwrap();
    let hourly = read::telemetry_buckets(pool, vehicle_id, None, from, q.to, 3600, 1_000_000)
        .await
        .unwrap();
    let daily = read::telemetry_buckets(pool, vehicle_id, None, from, q.to, 86_400, 1_000_000)
        .await
        .unwrap();
    let latest = read::vehicle_profile(pool, vehicle_id)
        .await
        .unwrap()
        .latest;
    let midnight = now.duration_trunc(Duration::days(1)).unwrap();
    let at_midnight = history::load(pool, &[vehicle_id], &dataset::span(midnight, midnight))
        .await
        .unwrap();
    let at_now = history::load(pool, &[vehicle_id], &dataset::span(now, now))
        .await
        .unwrap();
    assert!(!points.is_empty() && !odometer.is_empty() && !latest.is_empty());
    let text = serde_json::json!({
        "points": points, "odometer": odometer, "hourly": hourly, "daily": daily,
        "latest": latest,
        "features_midnight": format!("{:?}", features::compute(&at_midnight[0], midnight)),
    })
    .to_string();
    (text, features::compute(&at_now[0], now).values)
}

/// Asserts two answers are the same text, showing where they part if not.
fn assert_same_text(a: &str, b: &str, what: &str) {
    if a == b {
        return;
    }
    let at = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let around = |s: &str| {
        s.get(at.saturating_sub(300)..(at + 300).min(s.len()))
            .unwrap_or("")
            .to_owned()
    };
    panic!(
        "{what}: the answers part at byte {at}:\n{}\n-- vs --\n{}",
        around(a),
        around(b)
    );
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_rows_move_while_ingest_runs_and_every_answer_stays_the_same() {
    let db = TestDb::empty().await;
    let pool = db.pool().await;
    aftercare::store::migrate_schema_until(&pool, 21)
        .await
        .unwrap();
    let sim = recent_fleet(17, 10, 40);
    let out = simulate_range(&sim, &weather(&sim), 0..10);
    let deliveries: Vec<Delivery> = out
        .vehicles
        .iter()
        .flat_map(|v| &v.deliveries)
        .map(|d| Delivery {
            vin: d.message.vin.clone(),
            topic: d.message.topic.clone(),
            payload: d.message.payload.clone(),
        })
        .collect();
    let vins: Vec<String> = out.vehicles.iter().map(|v| v.vin.clone()).collect();
    let (old_vins, new_vins) = vins.split_at(7);
    let now = Utc::now();
    let old: Vec<&Delivery> = deliveries
        .iter()
        .filter(|d| old_vins.contains(&d.vin))
        .collect();
    store_as_layout_1(&pool, &old, now).await;
    let old_values = count(&pool, "SELECT count(*) FROM telemetry").await;
    assert!(old_values > 1_000, "{old_values} values in layout 1");

    // The upgrade: schema 30.., rows still in the old tables, readable through the view.
    aftercare::store::migrate(&pool).await.unwrap();
    assert!(relayout::legacy_present(&pool).await.unwrap());
    assert_eq!(
        count(&pool, "SELECT count(*) FROM telemetry").await,
        old_values
    );
    let ids: HashMap<String, i32> =
        sqlx::query_as::<_, (String, i32)>("SELECT vin, id FROM vehicles")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let from = sim.start - Duration::days(1);
    let mut before = Vec::new();
    for vin in old_vins {
        before.push(answers(&pool, ids[vin], from, now).await);
    }

    // Ingest runs while the rows move: the other cars' messages, and every old message
    // again (a broker redelivering), a window of the move and a batch in turn.
    let store = Store::open(pool.clone()).await.unwrap();
    let items: Vec<(bool, BatchItem)> = deliveries
        .iter()
        .filter_map(|d| {
            let message = parse_message(&d.topic, &d.payload, now, &Limits::default()).ok()?;
            let old = old_vins.contains(&d.vin);
            // The old cars' reports are not part of the sample tables' move: left out.
            if old && !matches!(message, Message::Telemetry { .. }) {
                return None;
            }
            Some((
                old,
                BatchItem::Message {
                    message,
                    received_at: now,
                },
            ))
        })
        .collect();
    let old_messages = items.iter().filter(|(old, _)| *old).count() as u64;
    let mut conn = pool.acquire().await.unwrap();
    let mut batches = items.chunks(100);
    let (mut windows, mut moved_all) = (0, false);
    let (mut redelivered, mut new_values) = (0u64, 0u64);
    let mut read_during = false;
    loop {
        if !moved_all {
            let m = relayout::move_window(&mut conn).await.unwrap();
            moved_all = m.done;
            windows += u32::from(!m.done);
        }
        match batches.next() {
            Some(batch) => {
                let plain: Vec<BatchItem> = batch.iter().map(|(_, i)| i.clone()).collect();
                let r = store.write_batch(&plain, WriteMethod::Copy).await.unwrap();
                for ((was_old, _), outcome) in batch.iter().zip(&r.outcomes) {
                    if *was_old {
                        assert_eq!(
                            *outcome,
                            Outcome::Duplicate,
                            "a message stored before the move"
                        );
                        redelivered += 1;
                    }
                }
                new_values += r.values_stored;
            }
            None if moved_all => break,
            None => {}
        }
        // Halfway through the move, a reader sees what it saw before.
        if windows == 3 && !read_during {
            read_during = true;
            let (text, _) = answers(&pool, ids[&old_vins[0]], from, now).await;
            assert_same_text(&before[0].0, &text, "read during the move");
        }
    }
    drop(conn);
    assert!(windows >= 4, "the move took {windows} windows");
    assert!(read_during);
    assert_eq!(redelivered, old_messages);
    assert!(relayout::finish_if_empty(&pool).await.unwrap());
    assert!(!relayout::legacy_present(&pool).await.unwrap());

    for (vin, (text, at_now)) in old_vins.iter().zip(&before) {
        let (after_text, after_now) = answers(&pool, ids[vin], from, now).await;
        assert_same_text(
            text,
            &after_text,
            &format!("{vin}: reads and features at midnight"),
        );
        assert!(close(at_now, &after_now), "{vin}: features now");
    }
    // Nothing lost, nothing doubled: the old values plus what ingest stored for the others.
    assert_eq!(
        count(&pool, "SELECT count(*) FROM telemetry").await,
        old_values + new_values as i64
    );
    for vin in new_vins {
        let stored = count(
            &pool,
            &format!("SELECT count(*) FROM samples s JOIN vehicles v ON v.id = s.vehicle_id WHERE v.vin = '{vin}'"),
        )
        .await;
        assert!(stored > 0, "{vin}: ingested during the move");
    }
    store.fold_rollup_all().await.unwrap();
    assert_rollup_matches_raw(&pool).await;
}

#[tokio::test]
async fn values_are_arrays_of_a_sample_and_read_back_as_stored() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Store::open(pool.clone()).await.unwrap();
    let now = Utc::now();
    let t = (now - Duration::hours(1))
        .duration_trunc(Duration::seconds(1))
        .unwrap();
    let topic = "v1/vehicles/WDB1240221A000123/telemetry";
    let items = [batch_item(
        topic,
        &serde_json::json!({"ts": t.to_rfc3339(), "seq": 9, "signals": {
            "Vehicle.Speed": 50.5, "Vehicle.TraveledDistance": 48213.4,
            "Vehicle.Cabin.Door.Row1.Left.IsOpen": true}}),
        now,
    )];
    let r = store.write_batch(&items, WriteMethod::Copy).await.unwrap();
    assert_eq!((r.samples_stored, r.values_stored), (1, 3));
    // One row: ids ascending, each with its value.
    let (ids, values): (Vec<i32>, Vec<f64>) =
        sqlx::query_as("SELECT signal_ids, signal_values FROM samples")
            .fetch_one(&pool)
            .await
            .unwrap();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT s.name FROM UNNEST($1::int4[]) WITH ORDINALITY AS u (id, i)
         JOIN signals s ON s.id = u.id ORDER BY u.i",
    )
    .bind(&ids)
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    let stored: HashMap<&str, f64> = names.iter().map(String::as_str).zip(values).collect();
    assert_eq!(stored["Vehicle.Speed"], 50.5);
    assert_eq!(stored["Vehicle.TraveledDistance"], 48213.4);
    assert_eq!(stored["Vehicle.Cabin.Door.Row1.Left.IsOpen"], 1.0);
    let vehicle_id: i32 = sqlx::query_scalar("SELECT id FROM vehicles")
        .fetch_one(&pool)
        .await
        .unwrap();
    let latest: Option<f64> =
        sqlx::query_scalar("SELECT signal_latest($1, 'Vehicle.TraveledDistance')")
            .bind(vehicle_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(latest, Some(48213.4));
    let none: Option<f64> =
        sqlx::query_scalar("SELECT signal_latest($1, 'Vehicle.OBD.EngineLoad')")
            .bind(vehicle_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(none, None, "a signal the vehicle never sent");
}

#[tokio::test]
async fn one_signal_pages_skip_samples_without_it_and_keep_two_samples_at_one_instant() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Store::open(pool.clone()).await.unwrap();
    let now = Utc::now();
    let t0 = (now - Duration::hours(2))
        .duration_trunc(Duration::seconds(1))
        .unwrap();
    let topic = "v1/vehicles/WDB1240221A000123/telemetry";
    // Speed in every third sample only; the sample at minute 9 has a twin (another seq).
    let mut items = Vec::new();
    let mut expected: Vec<(DateTime<Utc>, f64)> = Vec::new();
    for i in 0..30i64 {
        let ts = t0 + Duration::minutes(i);
        let mut signals = serde_json::json!({"Vehicle.TraveledDistance": 1000.0 + i as f64});
        if i % 3 == 0 {
            signals["Vehicle.Speed"] = serde_json::json!(i as f64);
            expected.push((ts, i as f64));
        }
        let payload = serde_json::json!({"ts": ts.to_rfc3339(), "seq": i, "signals": signals});
        items.push(batch_item(topic, &payload, now));
        if i == 9 {
            let twin = serde_json::json!({"ts": ts.to_rfc3339(), "seq": 1009,
                "signals": {"Vehicle.Speed": -9.0}});
            items.push(batch_item(topic, &twin, now));
            expected.push((ts, -9.0));
        }
    }
    let r = store.write_batch(&items, WriteMethod::Copy).await.unwrap();
    assert_eq!(r.samples_stored, 31);
    let vehicle_id = read::vehicle_id(&pool, "WDB1240221A000123")
        .await
        .unwrap()
        .unwrap();
    let speed = read::signal_ref(&pool, "Vehicle.Speed")
        .await
        .unwrap()
        .unwrap();
    let query = |after, limit| TelemetryQuery {
        vehicle_id,
        signal: Some(speed),
        from: t0,
        to: t0 + Duration::hours(1),
        after,
        limit,
    };
    // Pages of 3 walk every value once, in (ts, seq) order, whatever the page size.
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let (points, next) = read::telemetry(&pool, &query(after, 3)).await.unwrap();
        assert!(points.len() <= 3);
        assert!(points.iter().all(|p| p.signal == "Vehicle.Speed"));
        seen.extend(points.iter().map(|p| (p.ts, p.value)));
        match next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    let (all, next) = read::telemetry(&pool, &query(None, 100)).await.unwrap();
    assert_eq!(next, None);
    assert_eq!(all.len(), expected.len());
    // A cursor from the all-signals read that stopped before Speed at an instant still
    // gets Speed there; one at Speed itself does not.
    let t9 = t0 + Duration::minutes(9);
    let (points, _) = read::telemetry(&pool, &query(Some((t9, 9, speed.id - 1)), 1))
        .await
        .unwrap();
    assert_eq!((points[0].ts, points[0].value), (t9, 9.0));
    let (points, _) = read::telemetry(&pool, &query(Some((t9, 9, speed.id)), 1))
        .await
        .unwrap();
    assert_eq!((points[0].ts, points[0].value), (t9, -9.0));
}
