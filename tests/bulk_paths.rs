//! Bulk history's two paths: the fast one (vehicle ranges, duplicates and rollup worked out in
//! memory, COPY straight into the tables) stores exactly what the exactly-once path (the
//! ingest writer) stores for the same seed, arrival times included; a database that already
//! holds history for the fleet is refused by the fast path and written exactly-once by
//! `auto`, which then finds every message a redelivery (the fast path's ledgers are complete).

mod common;

use aftercare::config::{Config, WriteMethod};
use aftercare::simulator::bulk::{self, BulkPath};
use aftercare::simulator::engine::{simulate_range, weather};
use aftercare::simulator::{Progress, SimConfig, SimulateError, Simulation};
use aftercare::store::Store;
use common::*;
use std::collections::HashMap;
use std::sync::Arc;

async fn load(
    db: &TestDb,
    sim: &SimConfig,
    path: BulkPath,
) -> Result<bulk::BulkReport, SimulateError> {
    let store = Arc::new(Store::open(db.pool().await).await.unwrap());
    bulk::run_with(
        store,
        sim.clone(),
        path,
        WriteMethod::Copy,
        Config::default().limits(),
        &Progress::new(sim.days, false),
    )
    .await
}

/// Every stored table as text rows keyed by VIN and signal name (ids depend on arrival
/// order), arrival times included; rollup sums rounded (their float rounding depends on the
/// order values were added in).
async fn dump(pool: &sqlx::PgPool, with_deliveries: bool) -> Vec<(&'static str, Vec<String>)> {
    let dead_letters = if with_deliveries {
        "SELECT (topic, payload, payload_size, truncated, reason, detail, first_received, last_received, deliveries)::text FROM dead_letters"
    } else {
        "SELECT (topic, payload, payload_size, truncated, reason, detail, first_received)::text FROM dead_letters"
    };
    let queries = [
        ("vehicles", "SELECT vin FROM vehicles"),
        ("vehicle_profiles", "SELECT (v.vin, make, model, model_year, powertrain, home_workshop, owner_ref, offers_consent)::text FROM vehicle_profiles p JOIN vehicles v ON v.id = p.vehicle_id"),
        ("telemetry", "SELECT (v.vin, s.name, t.ts, t.value)::text FROM telemetry t JOIN vehicles v ON v.id = t.vehicle_id JOIN signals s ON s.id = t.signal_id"),
        ("samples", "SELECT (v.vin, seq, ts, received_at, cardinality(signal_ids))::text FROM samples x JOIN vehicles v ON v.id = x.vehicle_id"),
        ("dtc_reports", "SELECT (v.vin, seq, ts, received_at, source, mil, n_dtcs)::text FROM dtc_reports x JOIN vehicles v ON v.id = x.vehicle_id"),
        ("dtc_events", "SELECT (v.vin, ts, seq, code, status, spn, fmi, oc, sa, source)::text FROM dtc_events x JOIN vehicles v ON v.id = x.vehicle_id"),
        ("dtcs", "SELECT (v.vin, code, spn, fmi, x.first_seen, last_seen, cleared_at, last_status, last_status_ts, reports)::text FROM dtcs x JOIN vehicles v ON v.id = x.vehicle_id"),
        ("dead_letters", dead_letters),
        ("service_records", "SELECT (v.vin, source, external_id, performed_at, odometer_km, workshop, component, kind, job, notes)::text FROM service_records x JOIN vehicles v ON v.id = x.vehicle_id"),
        ("signal_daily", "SELECT (v.vin, s.name, day, n, min, max, round(sum::numeric, 6), round(sumsq::numeric, 3))::text FROM signal_daily d JOIN vehicles v ON v.id = d.vehicle_id JOIN signals s ON s.id = d.signal_id"),
        ("score_dirty", "SELECT v.vin FROM score_dirty x JOIN vehicles v ON v.id = x.vehicle_id"),
    ];
    let mut out = Vec::new();
    for (table, sql) in queries {
        let mut rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(pool).await.unwrap();
        rows.sort();
        out.push((table, rows));
    }
    out
}

fn assert_same(a: &[(&str, Vec<String>)], b: &[(&str, Vec<String>)], what: &str) {
    for ((table, x), (_, y)) in a.iter().zip(b) {
        assert!(!x.is_empty(), "{table} has rows");
        assert_eq!(
            x.len(),
            y.len(),
            "{what}: {table}: {} rows vs {}",
            x.len(),
            y.len()
        );
        if let Some((p, q)) = x.iter().zip(y).find(|(p, q)| p != q) {
            panic!("{what}: {table} differs: {p} vs {q}");
        }
    }
}

#[test]
fn vehicle_ranges_get_exactly_the_deliveries_the_day_by_day_simulation_hands_out() {
    let sim = recent_fleet(41, 9, 60);
    let mut by_vin: HashMap<String, Vec<String>> = HashMap::new();
    let mut records = Vec::new();
    let mut s = Simulation::new(sim.clone());
    while let Some(day) = s.next_day() {
        for d in day.deliveries {
            by_vin
                .entry(d.message.vin.clone())
                .or_default()
                .push(format!(
                    "{} {:?} {}",
                    d.at,
                    d.duplicate,
                    String::from_utf8_lossy(&d.message.payload)
                ));
        }
        records.extend(day.records.into_iter().map(|r| r.external_id));
    }
    let day_by_day_truth = s.into_truth();
    let w = weather(&sim);
    let mut ranged: HashMap<String, Vec<String>> = HashMap::new();
    let mut ranged_records = Vec::new();
    let mut truth = aftercare::simulator::Truth::default();
    for range in [0..4, 4..9] {
        let mut out = simulate_range(&sim, &w, range);
        for v in out.vehicles {
            let list: Vec<String> = v
                .deliveries
                .iter()
                .map(|d| {
                    format!(
                        "{} {:?} {}",
                        d.at,
                        d.duplicate,
                        String::from_utf8_lossy(&d.message.payload)
                    )
                })
                .collect();
            ranged.insert(v.vin, list);
        }
        ranged_records.extend(out.records.into_iter().map(|r| r.external_id));
        truth.failures.append(&mut out.truth.failures);
        truth.preventive.append(&mut out.truth.preventive);
        truth.degraded.append(&mut out.truth.degraded);
    }
    truth.sort();
    ranged.retain(|_, v| !v.is_empty());
    assert_eq!(by_vin.len(), ranged.len());
    for (vin, list) in &by_vin {
        assert_eq!(Some(list), ranged.get(vin), "{vin}");
    }
    records.sort();
    ranged_records.sort();
    assert_eq!(records, ranged_records);
    assert_eq!(day_by_day_truth, truth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_and_exactly_once_paths_store_identical_tables() {
    let sim = recent_fleet(31, 20, 120);
    let ledger_db = TestDb::new().await;
    let fast_db = TestDb::new().await;
    let slow = load(&ledger_db, &sim, BulkPath::ExactlyOnce).await.unwrap();
    let fast = load(&fast_db, &sim, BulkPath::Auto).await.unwrap();
    assert_eq!(slow.path, BulkPath::ExactlyOnce);
    assert_eq!(
        fast.path,
        BulkPath::Fast,
        "an empty database takes the fast path"
    );
    assert_eq!(fast.summary, slow.summary, "both sent the same");
    assert_eq!(fast.truth, slow.truth);
    assert_eq!(fast.stored, slow.stored, "and both stored the same");
    let s = &fast.summary;
    assert!(
        s.duplicates > 0 && s.dead_letters_expected > 0 && s.store_and_forward_arrays > 0,
        "{s}"
    );
    assert_eq!(fast.stored.values, s.values);
    assert_eq!(fast.stored.duplicates, s.duplicates);
    assert_eq!(fast.stored.dead_letters, s.dead_letters_expected);
    let pool = fast_db.pool().await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM rollup_delta").await,
        0,
        "the fast path writes the rollup itself"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM (
                 SELECT vehicle_id, signal_id, date_trunc('day', ts AT TIME ZONE 'UTC') AS day,
                        count(*) AS n, min(value) AS min, max(value) AS max
                 FROM telemetry GROUP BY 1, 2, 3) t
             FULL JOIN signal_daily d
               ON d.vehicle_id = t.vehicle_id AND d.signal_id = t.signal_id
              AND d.day AT TIME ZONE 'UTC' = t.day
             WHERE d.n IS DISTINCT FROM t.n OR d.min IS DISTINCT FROM t.min
                OR d.max IS DISTINCT FROM t.max"
        )
        .await,
        0,
        "the rollup is the aggregate of the stored values"
    );
    assert_same(
        &dump(&ledger_db.pool().await, true).await,
        &dump(&pool, true).await,
        "exactly-once vs fast",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_with_history_is_refused_by_the_fast_path_and_redelivered_by_auto() {
    let sim = recent_fleet(32, 12, 60);
    let db = TestDb::new().await;
    let first = load(&db, &sim, BulkPath::Fast).await.unwrap();
    assert_eq!(first.path, BulkPath::Fast);
    let pool = db.pool().await;
    let before = dump(&pool, false).await;

    // A bigger fleet shares the first 12 vehicles: the fast path refuses it, and writes
    // nothing.
    let bigger = SimConfig {
        vehicles: 14,
        ..sim.clone()
    };
    let refused = load(&db, &bigger, BulkPath::Fast).await;
    assert!(
        matches!(&refused, Err(SimulateError::Invalid(m)) if m.contains("already holds history")),
        "{:?}",
        refused.err()
    );
    assert_same(&before, &dump(&pool, false).await, "after the refusal");

    // `auto` falls back to the ingest writer, whose ledgers find every message of the
    // first load already stored.
    let again = load(&db, &sim, BulkPath::Auto).await.unwrap();
    assert_eq!(again.path, BulkPath::ExactlyOnce);
    assert_eq!(again.stored.messages_stored, 0, "{:?}", again.stored);
    assert_eq!(again.stored.values, 0);
    assert_eq!(again.stored.records_created, 0);
    assert_eq!(
        again.stored.duplicates,
        again.summary.messages - again.summary.dead_letters_expected
    );
    assert_same(&before, &dump(&pool, false).await, "after the redelivery");
    assert_eq!(
        count(&pool, "SELECT sum(deliveries)::int8 FROM dead_letters").await,
        2 * first.stored.dead_letters as i64,
        "dead letters count both deliveries"
    );
}
