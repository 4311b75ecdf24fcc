//! The fleet simulator: determinism, statistical realism against documented ranges,
//! precursors before failures, service records consistent with the ground truth, and (with a
//! real broker, service and database) live mode storing what it reports, live and bulk
//! storing the same tables.

mod common;

use aftercare::component::Component;
use aftercare::config::{Config, WriteMethod};
use aftercare::simulator::fleet::VehicleSpec;
use aftercare::simulator::{bulk, live, Kind, Progress};
use aftercare::simulator::{Delivery, Realism, SimConfig, Simulation, Truth};
use aftercare::store::keys::{self, Scope};
use aftercare::store::service_records::{NewServiceRecord, ServiceKind};
use aftercare::store::Store;
use aftercare::vehicle::Powertrain;
use chrono::{DateTime, TimeZone, Utc};
use common::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

struct Run {
    deliveries: Vec<Delivery>,
    records: Vec<NewServiceRecord>,
    truth: Truth,
    specs: HashMap<String, VehicleSpec>,
    days: u32,
}

fn simulate(seed: u64, vehicles: usize, days: u32, realism: Realism) -> Run {
    let mut sim = Simulation::new(SimConfig {
        seed,
        vehicles,
        workshops: 5,
        start: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
        days,
        realism,
    });
    let specs = sim.specs().map(|s| (s.vin.clone(), s.clone())).collect();
    let mut deliveries = Vec::new();
    let mut records = Vec::new();
    while let Some(day) = sim.next_day() {
        deliveries.extend(day.deliveries);
        records.extend(day.records);
    }
    Run {
        deliveries,
        records,
        truth: sim.into_truth(),
        specs,
        days,
    }
}

fn has(component: Component, p: Powertrain) -> bool {
    match component {
        Component::TractionBattery => p.has_traction_battery(),
        Component::Cooling | Component::Ignition | Component::Emissions | Component::Oil => {
            p.has_engine()
        }
        _ => true,
    }
}

/// Failures per vehicle-year among vehicles that have the component.
fn annual_rates(run: &Run) -> HashMap<Component, f64> {
    let years = f64::from(run.days) / 365.25;
    Component::ALL
        .into_iter()
        .map(|c| {
            let exposed = run.specs.values().filter(|s| has(c, s.powertrain)).count() as f64;
            let n = run
                .truth
                .failures
                .iter()
                .filter(|f| f.component == c)
                .count() as f64;
            (c, n / (exposed * years))
        })
        .collect()
}

/// What one vehicle reported: telemetry values and DTC entries by time.
#[derive(Default)]
struct Reported {
    values: Vec<(DateTime<Utc>, String, f64)>,
    dtcs: Vec<(DateTime<Utc>, String, String)>,
}

fn ts_of(v: &Value) -> DateTime<Utc> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc),
        v => DateTime::from_timestamp_millis(v.as_i64().unwrap()).unwrap(),
    }
}

/// Everything the fleet reported (first copies of well-formed messages), per VIN.
fn reported(run: &Run) -> HashMap<String, Reported> {
    let mut out: HashMap<String, Reported> = HashMap::new();
    for d in run
        .deliveries
        .iter()
        .filter(|d| !d.duplicate && !d.malformed)
    {
        let m = &d.message;
        let body: Value = serde_json::from_slice(&m.payload).unwrap();
        let r = out.entry(m.vin.clone()).or_default();
        if m.kind == Kind::Dtc {
            let ts = ts_of(&body["ts"]);
            for e in body["dtcs"].as_array().unwrap() {
                let code = match e["code"].as_str() {
                    Some(c) => c.to_owned(),
                    None => format!("SPN{}-FMI{}", e["spn"], e["fmi"]),
                };
                r.dtcs
                    .push((ts, code, e["status"].as_str().unwrap().to_owned()));
            }
        } else {
            let samples = match body {
                Value::Array(a) => a,
                one => vec![one],
            };
            for s in samples {
                let ts = ts_of(&s["ts"]);
                for (name, v) in s["signals"].as_object().unwrap() {
                    r.values.push((ts, name.clone(), v.as_f64().unwrap()));
                }
            }
        }
    }
    out
}

/// A sign of trouble with `component` in what the vehicle reported at `ts`: one of its fault
/// codes, or a reading past the level a technician would call worn or abnormal.
fn evidence(component: Component, name: &str, value: f64) -> bool {
    use aftercare::catalog::*;
    match component {
        Component::Battery12v => {
            (name == BATTERY_12V_CRANKING_VOLTAGE && value < 9.6)
                || (name == BATTERY_12V_VOLTAGE && value < 12.2)
        }
        Component::Brakes => name.ends_with(PAD_WEAR_LEAF) && value >= 80.0,
        Component::Tyres => {
            (name.ends_with(TIRE_PRESSURE_LEAF) && value < 200.0)
                || (name.ends_with(TREAD_DEPTH_LEAF) && value < 3.0)
        }
        Component::Cooling => name == COOLANT_TEMPERATURE && value > 104.0,
        Component::Ignition => name == MISFIRE_COUNT && value >= 20.0,
        Component::Emissions => name == CATALYST_EFFICIENCY && value < 92.0,
        Component::TractionBattery | Component::Oil => false,
    }
}

fn dtc_of(component: Component, code: &str, status: &str) -> bool {
    status != "cleared"
        && aftercare::catalog::dtc_component(code).map(|d| d.component) == Some(component)
}

fn deliveries_bytes(run: &Run) -> Vec<u8> {
    let mut out = Vec::new();
    for d in &run.deliveries {
        out.extend_from_slice(d.at.to_rfc3339().as_bytes());
        out.extend_from_slice(d.message.topic.as_bytes());
        out.extend_from_slice(&d.message.payload);
    }
    for r in &run.records {
        out.extend_from_slice(serde_json::to_string(r).unwrap().as_bytes());
    }
    run.truth.write_jsonl(&mut out).unwrap();
    out
}

#[test]
fn the_same_seed_gives_byte_identical_output_and_other_seeds_differ() {
    let a = simulate(7, 60, 150, Realism::default());
    let b = simulate(7, 60, 150, Realism::default());
    let c = simulate(8, 60, 150, Realism::default());
    assert!(!a.deliveries.is_empty() && !a.records.is_empty() && !a.truth.failures.is_empty());
    assert_eq!(deliveries_bytes(&a), deliveries_bytes(&b));
    assert_ne!(deliveries_bytes(&a), deliveries_bytes(&c));
    // Delivery effects draw from their own streams: switching them off changes no physics.
    let clean = simulate(7, 60, 150, Realism::NONE);
    assert_eq!(clean.truth, a.truth);
    assert_eq!(clean.records, a.records);
    assert!(clean
        .deliveries
        .iter()
        .all(|d| !d.duplicate && !d.malformed));
    // Every delivery effect shows up in the default run.
    assert!(a.deliveries.iter().any(|d| d.duplicate));
    assert!(a.deliveries.iter().any(|d| d.malformed));
    assert!(a
        .deliveries
        .iter()
        .any(|d| d.message.kind == Kind::TelemetryBatch));
    let out_of_order = a.deliveries.windows(2).any(|w| {
        w[0].message.vin == w[1].message.vin && w[0].message.payload > w[1].message.payload
    });
    assert!(
        out_of_order
            || a.deliveries
                .iter()
                .any(|d| d.message.kind == Kind::TelemetryBatch)
    );
}

/// The ranges documented in docs/simulator.md ("Realism and sources").
const RATE_RANGES: [(Component, f64, f64); 8] = [
    (Component::Battery12v, 0.010, 0.050),
    (Component::TractionBattery, 0.001, 0.010),
    (Component::Brakes, 0.002, 0.030),
    (Component::Tyres, 0.005, 0.040),
    (Component::Cooling, 0.003, 0.020),
    (Component::Ignition, 0.003, 0.015),
    (Component::Emissions, 0.0005, 0.010),
    (Component::Oil, 0.0005, 0.010),
];

/// Per-vehicle rate of change of a signal per km, from its first and last report between
/// resets (a rise for wear, a fall for tread); medians over the fleet.
fn wear_per_km(rep: &Reported, leaf: &str, falling: bool) -> Option<f64> {
    use aftercare::catalog::ODOMETER;
    let odo: Vec<(DateTime<Utc>, f64)> = rep
        .values
        .iter()
        .filter(|(_, n, _)| n == ODOMETER)
        .map(|(t, _, v)| (*t, *v))
        .collect();
    let series: Vec<(DateTime<Utc>, f64)> = rep
        .values
        .iter()
        .filter(|(_, n, _)| n.ends_with(leaf) && n.contains("Row1.Wheel.Left"))
        .map(|(t, _, v)| (*t, *v))
        .collect();
    // The longest run without a replacement.
    let mut best: Option<(f64, f64)> = None;
    let mut run_start = 0;
    for i in 1..=series.len() {
        let reset = i == series.len()
            || if falling {
                series[i].1 > series[i - 1].1 + 0.05
            } else {
                series[i].1 < series[i - 1].1 - 0.5
            };
        if reset {
            let (t0, v0) = series[run_start];
            let (t1, v1) = series[i - 1];
            let km = |t: DateTime<Utc>| odo.iter().find(|(ot, _)| *ot == t).map(|(_, v)| *v);
            if let (Some(k0), Some(k1)) = (km(t0), km(t1)) {
                if k1 - k0 > 5000.0 && best.is_none_or(|(k, _)| k1 - k0 > k) {
                    best = Some((k1 - k0, (v1 - v0).abs() / (k1 - k0)));
                }
            }
            run_start = i;
        }
    }
    best.map(|(_, rate)| rate)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn failure_rates_battery_fade_and_wear_life_match_documented_ranges() {
    let run = simulate(11, 1500, 730, Realism::NONE);
    let years = f64::from(run.days) / 365.25;
    let rates = annual_rates(&run);
    for (c, low, high) in RATE_RANGES {
        let exposed = run.specs.values().filter(|s| has(c, s.powertrain)).count() as f64 * years;
        // Widen by three Poisson standard deviations of the count this exposure gives.
        let slack = |rate: f64| 3.0 * (rate * exposed).sqrt() / exposed;
        let r = rates[&c];
        assert!(
            r >= low - slack(low) && r <= high + slack(high),
            "{c}: {r:.4} failures per vehicle-year, documented {low}..{high}"
        );
    }
    // The 12 V battery is the most frequent failure (ADAC: the top breakdown cause).
    let top = Component::ALL
        .into_iter()
        .max_by(|a, b| rates[a].total_cmp(&rates[b]))
        .unwrap();
    assert_eq!(top, Component::Battery12v, "{rates:?}");

    // Traction battery state of health: 1.8 %/year on average (Geotab 2024; 2.3 % in 2019),
    // faster with frequent DC fast charging.
    let reports = reported(&run);
    let mut fades = Vec::new();
    let mut by_fast_charging = (Vec::new(), Vec::new());
    for (vin, spec) in run
        .specs
        .iter()
        .filter(|(_, s)| s.powertrain == Powertrain::Bev)
    {
        let soh: Vec<&(DateTime<Utc>, String, f64)> = reports[vin]
            .values
            .iter()
            .filter(|(_, n, _)| n == aftercare::catalog::TRACTION_SOH)
            .collect();
        let (Some(first), Some(last)) = (soh.first(), soh.last()) else {
            continue;
        };
        let span = (last.0 - first.0).num_days() as f64 / 365.25;
        if span < 1.0 || soh.windows(2).any(|w| w[1].2 > w[0].2 + 1.0) {
            continue; // too short, or a pack repair in between
        }
        let fade = (first.2 - last.2) / span;
        fades.push(fade);
        if spec.fast_charge_share > 0.4 {
            by_fast_charging.0.push(fade);
        } else if spec.fast_charge_share < 0.1 {
            by_fast_charging.1.push(fade);
        }
    }
    let mean = fades.iter().sum::<f64>() / fades.len() as f64;
    assert!(
        fades.len() > 200,
        "{} battery-electric vehicles measured",
        fades.len()
    );
    assert!(
        (1.3..=2.6).contains(&mean),
        "mean state-of-health loss {mean:.2} %/year"
    );
    let avg = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        avg(&by_fast_charging.0) > avg(&by_fast_charging.1) + 0.1,
        "fast charging {:.2} vs little {:.2} %/year",
        avg(&by_fast_charging.0),
        avg(&by_fast_charging.1)
    );

    // Wear life in km: tyres 8 -> 1.6 mm in 40,000-80,000 km; front pads of combustion cars
    // 30,000-90,000 km.
    let tread: Vec<f64> = reports
        .values()
        .filter_map(|r| wear_per_km(r, aftercare::catalog::TREAD_DEPTH_LEAF, true))
        .map(|mm_per_km| 6.4 / mm_per_km)
        .collect();
    let tyre_life = median(tread);
    assert!(
        (40_000.0..=80_000.0).contains(&tyre_life),
        "median tyre life {tyre_life:.0} km"
    );
    let pads: Vec<f64> = reports
        .iter()
        .filter(|(vin, _)| run.specs[*vin].powertrain == Powertrain::Ice)
        .filter_map(|(_, r)| wear_per_km(r, aftercare::catalog::PAD_WEAR_LEAF, false))
        .map(|pct_per_km| 100.0 / pct_per_km)
        .collect();
    let pad_life = median(pads);
    assert!(
        (30_000.0..=90_000.0).contains(&pad_life),
        "median front pad life {pad_life:.0} km"
    );
}

#[test]
fn precursors_precede_warned_failures_and_are_rare_in_a_healthy_control() {
    let run = simulate(12, 1000, 730, Realism::NONE);
    let reports = reported(&run);
    let seen_between = |vin: &str, c: Component, from: DateTime<Utc>, to: DateTime<Utc>| {
        let r = &reports[vin];
        r.dtcs
            .iter()
            .any(|(t, code, status)| *t >= from && *t <= to && dtc_of(c, code, status))
            || r.values
                .iter()
                .any(|(t, n, v)| *t >= from && *t <= to && evidence(c, n, *v))
    };
    let warned: Vec<_> = run
        .truth
        .failures
        .iter()
        .filter(|f| f.precursor_start.is_some())
        .collect();
    let sudden = run.truth.failures.len() - warned.len();
    assert!(sudden > 0, "some failures come without warning");
    assert!(warned.len() > 60, "{} warned failures", warned.len());
    let with_evidence = warned
        .iter()
        .filter(|f| {
            let from = f.precursor_start.unwrap();
            assert!(from <= f.failed_at, "precursors start before the failure");
            seen_between(&f.vin, f.component, from, f.failed_at)
        })
        .count();
    let share = with_evidence as f64 / warned.len() as f64;
    assert!(
        share >= 0.8,
        "{share:.2} of warned failures had a visible precursor"
    );

    // Healthy control: vehicle and component pairs that never failed, had nothing found early
    // and were not left degrading.
    let start = run.deliveries.first().unwrap().at;
    let end = run.deliveries.last().unwrap().at;
    let mut control = 0;
    let mut alarmed = 0;
    for (vin, spec) in &run.specs {
        for c in Component::ALL
            .into_iter()
            .filter(|c| has(*c, spec.powertrain))
        {
            let touched = run
                .truth
                .failures
                .iter()
                .any(|f| f.vin == *vin && f.component == c)
                || run
                    .truth
                    .preventive
                    .iter()
                    .any(|p| p.vin == *vin && p.component == c)
                || run
                    .truth
                    .degraded
                    .iter()
                    .any(|d| d.vin == *vin && d.component == c);
            if touched {
                continue;
            }
            control += 1;
            let codes = reports[vin]
                .dtcs
                .iter()
                .any(|(t, code, status)| *t >= start && *t <= end && dtc_of(c, code, status));
            if codes {
                alarmed += 1;
            }
        }
    }
    let false_alarms = alarmed as f64 / control as f64;
    assert!(control > 3000);
    assert!(
        false_alarms < 0.05,
        "{false_alarms:.3} of healthy pairs reported a fault code"
    );
    assert!(share > 5.0 * false_alarms);
}

#[test]
fn service_records_are_consistent_with_the_ground_truth() {
    let run = simulate(13, 500, 730, Realism::default());
    let ids: HashSet<&str> = run.records.iter().map(|r| r.external_id.as_str()).collect();
    assert_eq!(ids.len(), run.records.len(), "external ids are unique");
    let end = run.records.iter().map(|r| r.performed_at).max().unwrap();
    let mut repairs_matched = 0;
    for f in &run.truth.failures {
        let repairs: Vec<_> = run
            .records
            .iter()
            .filter(|r| {
                r.vin == f.vin
                    && r.component == f.component
                    && r.kind == ServiceKind::Repair
                    && Some(r.performed_at) == f.repaired_at
            })
            .collect();
        match f.repaired_at {
            Some(at) => {
                assert!(at > f.failed_at, "repaired after failing: {f:?}");
                assert_eq!(repairs.len(), 1, "one repair record for {f:?}");
                assert!(repairs[0].odometer_km >= Some(f.odometer_km));
                repairs_matched += 1;
            }
            // Only failures at the very end of the run wait for their repair.
            None => assert!(end - f.failed_at < chrono::Duration::days(10), "{f:?}"),
        }
    }
    let repairs = run
        .records
        .iter()
        .filter(|r| r.kind == ServiceKind::Repair)
        .count();
    assert_eq!(
        repairs, repairs_matched,
        "every repair record answers a failure"
    );
    for r in run
        .records
        .iter()
        .filter(|r| r.kind == ServiceKind::Preventive)
    {
        let found = run.truth.preventive.iter().filter(|p| {
            p.vin == r.vin
                && p.component == r.component
                && p.job == r.job
                && p.found_at <= r.performed_at
                && r.performed_at - p.found_at < chrono::Duration::hours(12)
        });
        assert_eq!(found.count(), 1, "preventive record {r:?} is in the truth");
    }
    assert_eq!(
        run.truth.preventive.len(),
        run.records
            .iter()
            .filter(|r| r.kind == ServiceKind::Preventive)
            .count()
    );
    // Records only name parts the vehicle has; routine jobs are the scheduled ones.
    for r in &run.records {
        assert!(has(r.component, run.specs[&r.vin].powertrain), "{r:?}");
        if r.kind == ServiceKind::Routine {
            assert!(
                ["oil_service", "spark_plugs", "brake_fluid"].contains(&r.job.as_str()),
                "{r:?}"
            );
        }
        assert_eq!(
            r.workshop.as_deref().map(|w| w.starts_with("WS-")),
            Some(true)
        );
    }
    // Each kind occurs.
    for kind in ServiceKind::ALL {
        assert!(run.records.iter().any(|r| r.kind == kind), "{kind:?}");
    }
}

/// Runs `sim` live against a real broker and service at a fixed rate; returns the database
/// once ingest has taken every message.
async fn run_live(sim: SimConfig) -> (TestDb, aftercare::simulator::live::LiveReport) {
    let db = TestDb::new().await;
    let broker = TestBroker::start().await;
    let mut cfg = config(&db.url, &broker.url(), "ingest-sim");
    cfg.mqtt.share_group = String::new();
    cfg.ingest.rollup_interval_ms = 200;
    let service = start_connected(cfg).await;
    let pool = db.pool().await;
    load_demo_workshops(&pool).await;
    let key = keys::create(&pool, "simulator", &[Scope::Admin])
        .await
        .unwrap();
    let opts = live::LiveOptions {
        mqtt: broker.mqtt_config(),
        client_id: "sim-live".into(),
        compression: f64::INFINITY,
        rate: Some(1000.0),
        duration: None,
        max_messages: None,
        api: Some(live::ApiClient::new(
            &format!("http://{}", service.http_addr),
            &key,
        )),
    };
    let days = sim.days;
    let report = live::run(Simulation::new(sim), opts, &Progress::new(days, false))
        .await
        .unwrap();
    let metrics = service.metrics.clone();
    let want = report.summary.messages as f64;
    wait_until(
        std::time::Duration::from_secs(120),
        "every message ingested",
        || async { metric(&metrics.render(), "aftercare_ingest_messages_total", "") >= want },
    )
    .await;
    rollup_settled(&pool).await;
    service.shutdown().await.unwrap();
    (db, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_at_a_fixed_rate_publishes_what_it_reports_and_ingest_stores_it_all() {
    let (db, report) = run_live(recent_fleet(21, 16, 90)).await;
    let s = &report.summary;
    assert_eq!(report.publish.sent, s.messages, "published what it reports");
    assert_eq!(
        report.publish.acked, s.messages,
        "and the broker acknowledged all of it"
    );
    assert!(
        s.duplicates > 0 && s.dead_letters_expected > 0 && s.store_and_forward_arrays > 0,
        "{s}"
    );
    let pool = db.pool().await;
    let n = |sql: &'static str| {
        let pool = pool.clone();
        async move { count(&pool, sql).await as u64 }
    };
    assert_eq!(n("SELECT count(*) FROM samples").await, s.samples);
    assert_eq!(n("SELECT count(*) FROM telemetry").await, s.values);
    assert_eq!(n("SELECT count(*) FROM dtc_reports").await, s.dtc_reports);
    assert_eq!(n("SELECT count(*) FROM dtc_events").await, s.dtc_entries);
    assert_eq!(
        n("SELECT count(*) FROM dead_letters").await,
        s.dead_letters_expected
    );
    assert_eq!(
        n("SELECT count(*) FROM service_records").await,
        s.service_records()
    );
    assert_eq!(report.records_created, s.service_records());
    assert_eq!(n("SELECT count(*) FROM vehicle_profiles").await, 16);
    assert_eq!(n("SELECT count(*) FROM vehicles").await, 16);
    assert_eq!(n("SELECT sum(n)::int8 FROM signal_daily").await, s.values);
}

/// Every stored table, as text rows keyed by VIN and signal name rather than by ids (which
/// depend on arrival order), without arrival times; sums rounded (their float rounding depends
/// on the order rows were added in).
async fn dump(pool: &sqlx::PgPool) -> Vec<(&'static str, Vec<String>)> {
    let queries = [
        ("vehicles", "SELECT vin FROM vehicles"),
        ("vehicle_profiles", "SELECT (v.vin, make, model, model_year, powertrain, home_workshop, owner_ref, offers_consent)::text FROM vehicle_profiles p JOIN vehicles v ON v.id = p.vehicle_id"),
        ("telemetry", "SELECT (v.vin, s.name, t.ts, t.value)::text FROM telemetry t JOIN vehicles v ON v.id = t.vehicle_id JOIN signals s ON s.id = t.signal_id"),
        ("samples", "SELECT (v.vin, seq, ts, cardinality(signal_ids))::text FROM samples x JOIN vehicles v ON v.id = x.vehicle_id"),
        ("dtc_reports", "SELECT (v.vin, seq, ts, source, mil, n_dtcs)::text FROM dtc_reports x JOIN vehicles v ON v.id = x.vehicle_id"),
        ("dtc_events", "SELECT (v.vin, ts, seq, code, status, spn, fmi, oc, sa, source)::text FROM dtc_events x JOIN vehicles v ON v.id = x.vehicle_id"),
        ("dtcs", "SELECT (v.vin, code, spn, fmi, x.first_seen, last_seen, cleared_at, last_status, last_status_ts, reports)::text FROM dtcs x JOIN vehicles v ON v.id = x.vehicle_id"),
        ("dead_letters", "SELECT (topic, payload, payload_size, truncated, reason, detail, deliveries)::text FROM dead_letters"),
        ("service_records", "SELECT (v.vin, source, external_id, performed_at, odometer_km, workshop, component, kind, job, notes)::text FROM service_records x JOIN vehicles v ON v.id = x.vehicle_id"),
        ("signal_daily", "SELECT (v.vin, s.name, day, n, min, max, round(sum::numeric, 6), round(sumsq::numeric, 3))::text FROM signal_daily d JOIN vehicles v ON v.id = d.vehicle_id JOIN signals s ON s.id = d.signal_id"),
    ];
    let mut out = Vec::new();
    for (table, sql) in queries {
        let mut rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(pool).await.unwrap();
        rows.sort();
        out.push((table, rows));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_and_bulk_store_identical_tables() {
    let sim = recent_fleet(22, 16, 90);
    let (live_db, report) = run_live(sim.clone()).await;
    let bulk_db = TestDb::new().await;
    let store = Arc::new(Store::open(bulk_db.pool().await).await.unwrap());
    let bulk = bulk::run(
        store,
        Simulation::new(sim.clone()),
        WriteMethod::Copy,
        Config::default().limits(),
        &Progress::new(90, false),
    )
    .await
    .unwrap();
    assert_eq!(bulk.summary, report.summary, "both modes sent the same");
    assert_eq!(bulk.truth, report.truth);
    // The fast bulk path (vehicle ranges, COPY straight into the tables) too.
    let fast_db = TestDb::new().await;
    let fast = bulk::run_with(
        Arc::new(Store::open(fast_db.pool().await).await.unwrap()),
        sim,
        bulk::BulkPath::Fast,
        WriteMethod::Copy,
        Config::default().limits(),
        &Progress::new(90, false),
    )
    .await
    .unwrap();
    assert_eq!(fast.path, bulk::BulkPath::Fast);
    assert_eq!(fast.summary, report.summary);
    assert_eq!(fast.truth, report.truth);
    let live = dump(&live_db.pool().await).await;
    for (mode, db) in [("bulk", &bulk_db), ("fast bulk", &fast_db)] {
        let stored = dump(&db.pool().await).await;
        for ((table, a), (_, b)) in live.iter().zip(&stored) {
            assert!(!a.is_empty(), "{table} has rows");
            assert_eq!(
                a.len(),
                b.len(),
                "{table}: live {} rows, {mode} {}",
                a.len(),
                b.len()
            );
            if let Some((x, y)) = a.iter().zip(b).find(|(x, y)| x != y) {
                panic!("{table} differs: live {x} vs {mode} {y}");
            }
        }
    }
}

/// The simulator's API client retries a service that is restarting (connection refused, then
/// 503) and succeeds once it answers; a refusal (4xx) is final at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_client_retries_transient_failures_and_not_refusals() {
    use axum::http::StatusCode;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let port = free_port();
    let calls = Arc::new(AtomicUsize::new(0));
    let spec = aftercare::simulator::fleet::vehicle(1, 0, 5, Utc::now());
    let client = live::ApiClient::new(&format!("http://127.0.0.1:{port}"), "key");
    let seen = calls.clone();
    let refused_calls = Arc::new(AtomicUsize::new(0));
    let refusals = refused_calls.clone();
    // Nothing listens for the first half second; then two 503s, then 200s.
    let server = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let app = axum::Router::new()
            .route(
                "/v1/vehicles/{vin}",
                axum::routing::put(move || {
                    let seen = seen.clone();
                    async move {
                        match seen.fetch_add(1, Ordering::SeqCst) {
                            0 | 1 => StatusCode::SERVICE_UNAVAILABLE,
                            _ => StatusCode::OK,
                        }
                    }
                }),
            )
            .route(
                "/v1/service-records",
                axum::routing::post(move || {
                    refusals.fetch_add(1, Ordering::SeqCst);
                    async { StatusCode::UNPROCESSABLE_ENTITY }
                }),
            );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(listener, app).await.unwrap();
    });
    client
        .put_profile(&spec.vin, &spec.profile())
        .await
        .expect("retried until the service answered");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let record = NewServiceRecord {
        vin: spec.vin.clone(),
        source: "sim".into(),
        external_id: "r-1".into(),
        performed_at: Utc::now(),
        odometer_km: None,
        workshop: None,
        component: Component::Brakes,
        kind: ServiceKind::Repair,
        job: "brake_pads_front".into(),
        notes: None,
    };
    let refused = client.post_records(&[record]).await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("422")),
        "a refusal is final"
    );
    assert_eq!(refused_calls.load(Ordering::SeqCst), 1, "and not retried");
    server.abort();
}
