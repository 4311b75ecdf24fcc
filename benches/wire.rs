//! Criterion benches for the two CPU costs on the ingest hot path: parsing payloads against the
//! wire contract, and encoding rows for binary COPY. Run: `cargo bench --bench wire`.

use aftercare::simulator::{Fleet, Kind};
use aftercare::store::copy::SampleCopyEncoder;
use aftercare::wire::{parse_message, Limits};
use chrono::{Duration, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn messages(kind: Kind, n: usize) -> Vec<aftercare::simulator::Generated> {
    let mut fleet = Fleet::new(1, 100, Utc::now() - Duration::days(1));
    let mut out = Vec::new();
    while out.len() < n {
        let m = fleet.next_message();
        if m.kind == kind {
            out.push(m);
        }
    }
    out
}

fn parsing(c: &mut Criterion) {
    let limits = Limits::default();
    let now = Utc::now();
    let mut group = c.benchmark_group("parse");
    for kind in [Kind::Telemetry, Kind::TelemetryBatch, Kind::Dtc] {
        let msgs = messages(kind, 200);
        let bytes: usize = msgs.iter().map(|m| m.payload.len()).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{kind:?}")),
            &msgs,
            |b, msgs| {
                b.iter(|| {
                    for m in msgs {
                        let parsed = parse_message(&m.topic, &m.payload, now, &limits);
                        assert!(parsed.is_ok());
                    }
                })
            },
        );
    }
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let ts = Utc::now();
    // 20,000 values as the pipeline encodes them: samples of 22 signals.
    let samples = 20_000 / 22;
    let ids: Vec<i32> = (1..=22).collect();
    let values: Vec<f64> = (0..22).map(f64::from).collect();
    let mut group = c.benchmark_group("copy_encode");
    group.throughput(Throughput::Elements((samples * 22) as u64));
    group.bench_function("sample_rows", |b| {
        b.iter(|| {
            let mut enc = SampleCopyEncoder::with_capacity(samples, samples * 22);
            for i in 0..samples as i32 {
                enc.push(i % 1000, ts, i64::from(i), ts, &ids, &values);
            }
            enc.finish()
        })
    });
    group.finish();
}

criterion_group!(benches, parsing, encoding);
criterion_main!(benches);
