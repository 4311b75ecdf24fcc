//! Simulator generation speed in vehicle-days per second: the physics, diagnostics, workshop
//! visits, delivery effects and the JSON payloads of every message, without any I/O.
//! Run: `cargo bench --bench simulator`.

use aftercare::simulator::{Realism, SimConfig, Simulation};
use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn generate(vehicles: usize, days: u32, realism: Realism) -> usize {
    let mut sim = Simulation::new(SimConfig {
        seed: 3,
        vehicles,
        workshops: 5,
        start: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
        days,
        realism,
    });
    let mut messages = 0;
    while let Some(day) = sim.next_day() {
        messages += day.deliveries.len();
    }
    messages
}

fn generation(c: &mut Criterion) {
    let (vehicles, days) = (200, 60);
    let mut group = c.benchmark_group("simulate");
    group.throughput(Throughput::Elements((vehicles * days as usize) as u64));
    for (name, realism) in [("clean", Realism::NONE), ("realistic", Realism::default())] {
        group.bench_with_input(BenchmarkId::new("vehicle_days", name), &realism, |b, r| {
            b.iter(|| generate(vehicles, days, *r))
        });
    }
    group.finish();
}

criterion_group!(benches, generation);
criterion_main!(benches);
