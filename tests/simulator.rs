//! The fleet simulator: determinism, statistical realism against documented ranges,
//! precursors before failures, service records consistent with the ground truth, and (with a
//! real broker, service and database) live mode storing what it reports, live and bulk
//! storing the same tables.

mod common;

use aftercare::component::Component;
use aftercare::simulator::{Delivery, Realism, SimConfig, Simulation, Truth};
use aftercare::store::profiles::Powertrain;
use aftercare::store::service_records::NewServiceRecord;
use chrono::{TimeZone, Utc};
use std::collections::HashMap;

struct Run {
    deliveries: Vec<Delivery>,
    records: Vec<NewServiceRecord>,
    truth: Truth,
    powertrains: HashMap<String, Powertrain>,
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
    let powertrains = sim.specs().map(|s| (s.vin.clone(), s.powertrain)).collect();
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
        powertrains,
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
            let exposed = run.powertrains.values().filter(|p| has(c, **p)).count() as f64;
            let n = run.truth.failures.iter().filter(|f| f.component == c).count() as f64;
            (c, n / (exposed * years))
        })
        .collect()
}

#[test]
fn calibration_print() {
    let run = simulate(1, 2000, 730, Realism::NONE);
    let rates = annual_rates(&run);
    for c in Component::ALL {
        let warned = run.truth.failures.iter().filter(|f| f.component == c && f.precursor_start.is_some()).count();
        let all = run.truth.failures.iter().filter(|f| f.component == c).count();
        let prev = run.truth.preventive.iter().filter(|f| f.component == c).count();
        eprintln!("{c}: {:.4}/yr failures {all} warned {warned} preventive {prev}", rates[&c]);
    }
    eprintln!("deliveries {} records {}", run.deliveries.len(), run.records.len());
    let values: usize = run.deliveries.iter().map(|d| d.message.values).sum();
    eprintln!("values per vehicle-day {:.2}", values as f64 / (2000.0 * 730.0));
}

#[test]
fn causes_print() {
    let run = simulate(1, 400, 730, Realism::NONE);
    let mut causes: HashMap<String, usize> = HashMap::new();
    for f in &run.truth.failures {
        let key: String = f.cause.chars().filter(|c| !c.is_ascii_digit()).take(40).collect();
        *causes.entry(format!("{} {key}", f.component)).or_default() += 1;
    }
    let mut v: Vec<_> = causes.into_iter().collect();
    v.sort();
    for (k, n) in v { eprintln!("{n:5} {k}"); }
}

#[test]
fn brakes_print() {
    let run = simulate(1, 600, 730, Realism::NONE);
    for f in run.truth.failures.iter().filter(|f| f.component == Component::Brakes) {
        let lead = f.precursor_start.map(|p| (f.failed_at - p).num_days());
        let recs: Vec<String> = run.records.iter().filter(|r| r.vin == f.vin && r.component == Component::Brakes).map(|r| format!("{}:{}:{}", r.performed_at.date_naive(), r.kind, r.job)).collect();
        let any: Vec<String> = run.records.iter().filter(|r| r.vin == f.vin).map(|r| format!("{}:{}", r.performed_at.date_naive(), r.job)).collect();
        eprintln!("{} {} lead {:?} {:?} brake recs {:?} all {:?}", f.vin, f.failed_at.date_naive(), lead, run.powertrains[&f.vin], recs, any.len());
    }
}
