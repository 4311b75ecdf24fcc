//! Criterion benches for the model: scoring throughput (features from a vehicle's loaded
//! history plus all its component models with explanations, one core) and training time for
//! 100,000 examples (one component and horizon: logistic regression alone, and logistic plus
//! the forest, which is what `aftercare model train` fits per model). Run:
//! `cargo bench --bench model`.

use aftercare::catalog;
use aftercare::component::Component;
use aftercare::model::artifact::{Artifact, ComponentModel, DataSummary, HorizonModel, Training};
use aftercare::model::dataset::{Window, LONG_SIGNAL_LOOKBACK_DAYS, SIGNAL_LOOKBACK_DAYS};
use aftercare::model::forest::ForestParams;
use aftercare::model::learn::{self, Split, TrainConfig};
use aftercare::model::score::Scorer;
use aftercare::model::{feature_list, features};
use aftercare::vehicle::{
    day_index, day_start, DayAgg, DtcEvent, History, Powertrain, ServiceEvent, ServiceKind,
};
use aftercare::wire::DtcStatus;
use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// A vehicle with every catalogued signal over the days live scoring loads (as the daily
/// rollup holds them: `SIGNAL_LOOKBACK_DAYS`, half a year for end-of-life trends), a few
/// fault-code events and service records.
fn history(i: usize, rng: &mut ChaCha8Rng, at: DateTime<Utc>) -> History {
    let mut h = History::new(i as i32, format!("BENCH{i:012}"));
    h.profile.powertrain = Some(if i % 3 == 0 {
        Powertrain::Bev
    } else {
        Powertrain::Ice
    });
    h.profile.model_year = Some(2015 + (i % 10) as i32);
    let today = day_index(at);
    h.first_data = Some((today - 400, 10_000.0));
    for (s, spec) in catalog::SIGNALS.iter().enumerate() {
        let base = rng.gen::<f64>() * 100.0;
        let trend = rng.gen::<f64>() - 0.5;
        let lookback = if feature_list::long_window_signals().contains(&spec.name) {
            LONG_SIGNAL_LOOKBACK_DAYS
        } else {
            SIGNAL_LOOKBACK_DAYS
        };
        for d in (today - lookback)..today {
            let v = if spec.name == catalog::ODOMETER {
                30_000.0 + 50.0 * (d - today + lookback) as f64
            } else {
                base + trend * (d - today) as f64 + rng.gen::<f64>()
            };
            h.signals[s].push(DayAgg {
                day: d,
                end: day_start(d + 1),
                n: 24.0,
                min: v - 1.0,
                max: v + 1.0,
                sum: 24.0 * v,
                sumsq: 24.0 * v * v + 8.0,
            });
        }
    }
    for (k, code) in ["P0301", "P0420", "C0750"].iter().enumerate() {
        let component = catalog::dtc_component(code).map(|d| d.component);
        h.dtcs.push(DtcEvent {
            ts: at - Duration::days(40 - 10 * k as i64),
            code: (*code).into(),
            status: DtcStatus::Pending,
            component,
        });
    }
    for (k, c) in [Component::Brakes, Component::Oil, Component::Tyres]
        .iter()
        .enumerate()
    {
        h.service.push(ServiceEvent {
            performed_at: at - Duration::days(200 - 50 * k as i64),
            odometer_km: Some(20_000.0),
            component: *c,
            kind: ServiceKind::Routine,
        });
    }
    h
}

/// `n` rows of `p` features with a known logistic signal (3 % positives).
fn synthetic(n: usize, p: usize, seed: u64) -> (Array2<f64>, Vec<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_fn((n, p), |_| rng.gen::<f64>() * 2.0 - 1.0);
    let y = (0..n)
        .map(|i| {
            let z = -4.0 + 2.5 * x[(i, 0)] - 1.5 * x[(i, 1)] * x[(i, 2)];
            rng.gen::<f64>() < 1.0 / (1.0 + (-z).exp())
        })
        .collect();
    (x, y)
}

fn artifact(forest: bool) -> Artifact {
    let config = TrainConfig {
        forest: forest.then(|| ForestParams {
            trees: 60,
            ..ForestParams::default()
        }),
        // Keep the forest even where logistic regression would win, to time its scoring.
        forest_margin: if forest { -1.0 } else { 0.01 },
        ..TrainConfig::default()
    };
    let components = Component::ALL
        .iter()
        .enumerate()
        .map(|(c, &component)| {
            let columns = feature_list::for_component(component);
            let horizons = [7, 30, 90]
                .into_iter()
                .map(|days| {
                    let (x, y) = synthetic(6_000, columns.len(), (c * 100 + days as usize) as u64);
                    let (xt, xv) = x.view().split_at(ndarray::Axis(0), 4_000);
                    let model = learn::train_binary(
                        Split {
                            x: xt,
                            y: &y[..4_000],
                        },
                        Split {
                            x: xv,
                            y: &y[4_000..],
                        },
                        &config,
                    )
                    .expect("train");
                    HorizonModel {
                        days,
                        model,
                        rule_baseline: None,
                    }
                })
                .collect();
            ComponentModel::new(component, horizons)
        })
        .collect();
    let t = Utc::now();
    let training = Training {
        window: Window {
            from: t,
            to: t,
            cadence_days: 7,
        },
        split_at: t,
        horizons: vec![7, 30, 90],
        config,
        labels: String::new(),
    };
    Artifact::new(
        training,
        DataSummary::default(),
        components,
        BTreeMap::new(),
    )
}

fn scoring(c: &mut Criterion) {
    let at = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let fleet: Vec<History> = (0..200).map(|i| history(i, &mut rng, at)).collect();
    let mut group = c.benchmark_group("score");
    group.throughput(Throughput::Elements(fleet.len() as u64));
    for (name, forest) in [("logistic", false), ("forest", true)] {
        let scorer = Scorer::new(artifact(forest)).expect("artifact");
        group.bench_function(format!("200 vehicles, {name} models"), |b| {
            b.iter(|| {
                fleet
                    .iter()
                    .map(|h| scorer.score(h, at).len())
                    .sum::<usize>()
            })
        });
    }
    group.bench_function("200 vehicles, features only", |b| {
        b.iter(|| {
            fleet
                .iter()
                .map(|h| features::compute(h, at).values.len())
                .sum::<usize>()
        })
    });
    group.finish();
}

fn training(c: &mut Criterion) {
    // The size of one component's model: its features plus the vehicle context.
    let p = feature_list::for_component(Component::Brakes).len();
    let (x, y) = synthetic(125_000, p, 9);
    let (xt, xv) = x.view().split_at(ndarray::Axis(0), 100_000);
    let mut group = c.benchmark_group("train 100,000 examples");
    group.sample_size(10);
    for (name, forest) in [
        ("logistic", None),
        (
            "logistic + forest (60 trees)",
            Some(ForestParams::default()),
        ),
    ] {
        let config = TrainConfig {
            forest,
            ..TrainConfig::default()
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                learn::train_binary(
                    Split {
                        x: xt,
                        y: &y[..100_000],
                    },
                    Split {
                        x: xv,
                        y: &y[100_000..],
                    },
                    &config,
                )
                .expect("train")
                .threshold
            })
        });
    }
    group.finish();
}

criterion_group!(benches, scoring, training);
criterion_main!(benches);
