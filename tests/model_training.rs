//! The model against a real database: features as of a past instant ignore everything stored
//! for later; labels come from service records per horizon; and a model trained on a
//! synthetic fleet with a known failure signal ranks the at-risk vehicles first, saves and
//! reloads, and is evaluated against ground truth.

mod common;
mod model_common;

use aftercare::catalog;
use aftercare::component::Component;
use aftercare::model::artifact::Artifact;
use aftercare::model::dataset::{self, Window, LONG_SIGNAL_LOOKBACK_DAYS, SIGNAL_LOOKBACK_DAYS};
use aftercare::model::evaluate::{self, EvalSpec};
use aftercare::model::forest::ForestParams;
use aftercare::model::labels::Truth;
use aftercare::model::learn::TrainConfig;
use aftercare::model::metrics;
use aftercare::model::score::Scorer;
use aftercare::model::train::{self, TrainSpec};
use aftercare::model::{feature_list, features};
use aftercare::store::history;
use aftercare::vehicle::day_index;
use chrono::{DateTime, Duration, Utc};
use common::TestDb;
use model_common::*;

fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[tokio::test]
async fn features_as_of_an_instant_ignore_data_stored_for_later() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let v = vehicle(&pool, &vin(1), "ice", 2018).await;
    let t0 = midnight(Utc::now()) - Duration::days(60);
    // The instant is mid-morning: the day's earlier readings count, its later ones do not.
    let as_of = t0 + Duration::days(30) + Duration::hours(6);
    let pad = catalog::wheel_signal(0, catalog::PAD_WEAR_LEAF);
    let mut rows = Vec::new();
    for d in 0..30 {
        let ts = t0 + Duration::days(d) + Duration::hours(12);
        rows.push((v, catalog::ODOMETER, ts, 50_000.0 + 80.0 * d as f64));
        rows.push((v, pad.as_str(), ts, 40.0 + d as f64));
        rows.push((v, catalog::COOLANT_TEMPERATURE, ts, 90.0 + (d % 3) as f64));
    }
    let morning = t0 + Duration::days(30);
    rows.push((v, pad.as_str(), morning + Duration::minutes(30), 71.0));
    rows.push((v, pad.as_str(), morning + Duration::hours(3), 73.0));
    telemetry(&pool, &rows).await;
    dtc(&pool, v, t0 + Duration::days(20), "P0217", "pending").await;
    service(
        &pool,
        v,
        t0 + Duration::days(10),
        "brakes",
        "routine",
        50_800.0,
    )
    .await;
    refresh_rollup(&pool).await;

    let load = |at| {
        let pool = pool.clone();
        async move {
            let h = history::load(&pool, &[v], &dataset::span(at, at))
                .await
                .unwrap();
            features::compute(&h[0], at)
        }
    };
    let before = load(as_of).await;
    // The partial day before the instant is seen: its mean is the level.
    assert_eq!(before.value("brakes.worst_brake_padwear.level"), 72.0);
    assert_eq!(before.value("cooling.dtc.active"), 1.0);
    assert_eq!(before.value("brakes.service.days_since"), 20.25);

    // Everything after the instant: later the same day, later days, a clear of the code, a
    // brake repair, a new code.
    let mut later = vec![(v, pad.as_str(), as_of + Duration::hours(1), 99.0)];
    for d in 31..40 {
        let ts = t0 + Duration::days(d) + Duration::hours(12);
        later.push((v, catalog::ODOMETER, ts, 60_000.0));
        later.push((v, pad.as_str(), ts, 5.0));
        later.push((v, catalog::COOLANT_TEMPERATURE, ts, 130.0));
    }
    telemetry(&pool, &later).await;
    dtc(&pool, v, as_of + Duration::minutes(1), "P0217", "cleared").await;
    dtc(&pool, v, as_of + Duration::days(2), "P0301", "confirmed").await;
    service(
        &pool,
        v,
        as_of + Duration::hours(2),
        "brakes",
        "repair",
        52_500.0,
    )
    .await;
    refresh_rollup(&pool).await;

    let after = load(as_of).await;
    assert!(
        same(&before.values, &after.values),
        "features changed with later data"
    );
    assert_eq!(before.active_codes, after.active_codes);
    // Not vacuous: a later instant does see the new data.
    let next_week = load(as_of + Duration::days(7)).await;
    assert_eq!(next_week.value("brakes.worst_brake_padwear.level"), 5.0);
    assert_eq!(next_week.value("brakes.service.repairs_365d"), 1.0);
    assert_eq!(next_week.value("cooling.dtc.active"), 0.0);
}

#[tokio::test]
async fn end_of_life_trends_read_half_a_year_of_their_signal_and_no_more_of_others() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let v = vehicle(&pool, &vin(3), "bev", 2019).await;
    let end = midnight(Utc::now());
    let t0 = end - Duration::days(300);
    // 300 days: the odometer daily, state of health weekly, fading 0.02 points a day to
    // 71.0% at the end, each reading 0.2 points off (alternately high and low).
    let mut rows = Vec::new();
    for d in 0..300 {
        let ts = t0 + Duration::days(d) + Duration::hours(12);
        rows.push((v, catalog::ODOMETER, ts, 10_000.0 + 40.0 * d as f64));
        if d % 7 == 0 {
            let noise = if (d / 7) % 2 == 0 { 0.2 } else { -0.2 };
            let soh = 71.0 + 0.02 * (300 - d) as f64 + noise;
            rows.push((v, catalog::TRACTION_SOH, ts, soh));
        }
    }
    telemetry(&pool, &rows).await;
    refresh_rollup(&pool).await;

    let h = history::load(&pool, &[v], &dataset::span(end, end))
        .await
        .unwrap();
    let first_day = |name: &str| {
        let i = catalog::SIGNALS
            .iter()
            .position(|s| s.name == name)
            .unwrap();
        h[0].signals[i].first().map(|d| d.day).unwrap()
    };
    let days_back = |name: &str| day_index(end) - first_day(name);
    // The trend's signal reaches half a year back, the others only their 90-day windows.
    assert!(
        (LONG_SIGNAL_LOOKBACK_DAYS - 7..=LONG_SIGNAL_LOOKBACK_DAYS)
            .contains(&days_back(catalog::TRACTION_SOH)),
        "{}",
        days_back(catalog::TRACTION_SOH)
    );
    assert_eq!(days_back(catalog::ODOMETER), SIGNAL_LOOKBACK_DAYS);
    // From the database to the feature: about 50 days to 70%, where the last reading alone
    // (day 294, 0.2 high) would say about 66.
    let snapshot = features::compute(&h[0], end);
    let days = feature_list::days_to_limit(
        snapshot.value("traction_battery.tractionbattery_stateofhealth.ln_days_to_limit"),
    );
    assert!((days - 50.0).abs() < 6.0, "{days}");
}

#[tokio::test]
async fn labels_per_horizon_come_from_repairs_and_preventive_jobs_not_routine_ones() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let v = vehicle(&pool, &vin(2), "ice", 2020).await;
    let t0 = midnight(Utc::now()) - Duration::days(200);
    let rows: Vec<_> = (0..120)
        .map(|d| {
            let ts = t0 + Duration::days(d) + Duration::hours(12);
            (v, catalog::ODOMETER, ts, 1_000.0 + 50.0 * d as f64)
        })
        .collect();
    telemetry(&pool, &rows).await;
    refresh_rollup(&pool).await;
    service(
        &pool,
        v,
        t0 + Duration::days(45),
        "brakes",
        "repair",
        3_250.0,
    )
    .await;
    service(
        &pool,
        v,
        t0 + Duration::days(60),
        "tyres",
        "preventive",
        4_000.0,
    )
    .await;
    service(&pool, v, t0 + Duration::days(42), "oil", "routine", 3_100.0).await;

    let window = Window {
        from: t0 + Duration::days(40),
        to: t0 + Duration::days(120),
        cadence_days: 7,
    };
    let data = dataset::build(&pool, &window, &[7, 30, 90], window.to, false)
        .await
        .unwrap();
    let days: Vec<i64> = data.rows.iter().map(|r| (r.at - t0).num_days()).collect();
    assert_eq!(
        days,
        vec![40, 47, 54, 61, 68, 75, 82, 89, 96, 103, 110, 117]
    );
    let c = |x: Component| Component::ALL.iter().position(|&y| y == x).unwrap();
    let positive = |row: usize, comp: Component, h: usize| data.rows[row].is_positive(c(comp), h);
    // Day 40: brake repair on day 45 is within 7, 30 and 90 days.
    assert!(positive(0, Component::Brakes, 0) && positive(0, Component::Brakes, 1));
    // Day 47: the repair is in the past.
    assert!(!positive(1, Component::Brakes, 0) && !positive(1, Component::Brakes, 2));
    // Preventive tyres on day 60: not within 7 days of day 40, within 30; within 7 of day 54.
    assert!(!positive(0, Component::Tyres, 0) && positive(0, Component::Tyres, 1));
    assert!(positive(2, Component::Tyres, 0));
    // Routine oil service is never a positive.
    assert!((0..data.rows.len()).all(|r| (0..3).all(|h| !positive(r, Component::Oil, h))));
    // Censoring: a horizon's label exists only when its window ends by the data's end.
    assert_eq!(data.rows_for(c(Component::Brakes), 0, |_| true).len(), 11);
    assert_eq!(data.rows_for(c(Component::Brakes), 1, |_| true).len(), 8);
    assert_eq!(data.rows_for(c(Component::Brakes), 2, |_| true).len(), 0);
    // An ICE vehicle has no traction battery.
    assert!(!data.rows[0].has(c(Component::TractionBattery)));
    let jobs = &data.jobs[&Component::Brakes];
    assert_eq!((jobs.repair, jobs.routine, jobs.preventive), (1, 0, 0));
}

/// 40 vehicles: half wear their brake pads fast (and fail every ~70 days), half slowly (and
/// never fail). Train on the first 270 days, then score as of the end and evaluate the last
/// 90 days against the failures as ground truth.
#[tokio::test]
async fn a_model_trained_on_a_synthetic_fleet_ranks_the_at_risk_vehicles_first() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let end = midnight(Utc::now()) - Duration::days(1);
    let days = 360;
    let start = end - Duration::days(days);
    let fast = |i: usize| i % 2 == 0;
    let fleet = brake_fleet(&pool, 40, days, end, |i| if fast(i) { 1.2 } else { 0.05 }).await;
    assert!(
        fleet.failures.len() >= 60,
        "{} failures",
        fleet.failures.len()
    );
    assert!(fleet.failures.iter().all(|(i, _)| fast(*i)));

    let train_end = start + Duration::days(270);
    let spec = TrainSpec {
        window: Window {
            from: start + Duration::days(30),
            to: train_end,
            cadence_days: 3,
        },
        split_at: start + Duration::days(200),
        horizons: vec![7, 30, 90],
        config: TrainConfig {
            forest: Some(ForestParams {
                trees: 30,
                ..ForestParams::default()
            }),
            ..TrainConfig::default()
        },
        show_progress: false,
    };
    let artifact = train::train(&pool, &spec).await.unwrap();
    let brakes = artifact
        .components
        .iter()
        .find(|c| c.component == Component::Brakes)
        .unwrap();
    let b30 = brakes.horizons.iter().find(|h| h.days == 30).unwrap();
    assert_ne!(b30.model.learner.name(), "prior");
    assert!(b30.model.train_positives > 20);
    let v = &b30.model.validation[0];
    assert!(
        v.roc_auc.unwrap() > 0.9,
        "validation ROC-AUC {:?}",
        v.roc_auc
    );
    // No brake jobs at all on other components: they fall back to the base rate.
    let oil = artifact
        .components
        .iter()
        .find(|c| c.component == Component::Oil)
        .unwrap();
    assert!(oil
        .horizons
        .iter()
        .all(|h| h.model.learner.name() == "prior"));

    // Saved and loaded back unchanged, with its card.
    let dir = tempfile::tempdir().unwrap();
    let path = artifact.save(dir.path()).unwrap();
    let loaded = Artifact::load(&path).unwrap();
    let current = Artifact::load(&dir.path().join("current.json")).unwrap();
    assert!(loaded.version == artifact.version && current.version == artifact.version);
    assert_eq!(loaded.components.len(), artifact.components.len());
    let card = std::fs::read_to_string(dir.path().join("current.md")).unwrap();
    assert!(card.contains(&artifact.version) && card.contains("| brakes | 30 d |"));

    // Ranking as of the end: fast wearers close to the limit above every slow wearer. The
    // reloaded model scores like the trained one (JSON floats may differ in the last bit).
    let trained = Scorer::new(artifact.clone()).unwrap();
    let scorer = Scorer::new(loaded).unwrap();
    let histories = history::load(&pool, &fleet.ids, &dataset::span(end, end))
        .await
        .unwrap();
    let mut scores = Vec::new();
    let mut labels = Vec::new();
    let mut top: Option<(f64, Vec<String>)> = None;
    for (i, h) in histories.iter().enumerate() {
        let at_risk = fast(i) && fleet.wear_now[i] >= 60.0;
        // Fast wearers not yet near the limit are neither: leave them out.
        if fast(i) && !at_risk {
            continue;
        }
        let s = scorer
            .score(h, end)
            .into_iter()
            .find(|s| s.component == Component::Brakes)
            .unwrap();
        let t = trained
            .score(h, end)
            .into_iter()
            .find(|s| s.component == Component::Brakes)
            .unwrap();
        assert!((0..3).all(|k| (s.p[k] - t.p[k]).abs() < 1e-9));
        if top.as_ref().is_none_or(|t| s.p[1] > t.0) {
            top = Some((s.p[1], s.factors.iter().map(|f| f.text.clone()).collect()));
        }
        scores.push(s.p[1]);
        labels.push(at_risk);
    }
    assert!(labels.iter().filter(|&&l| l).count() >= 5);
    let auc = metrics::roc_auc(&scores, &labels).unwrap();
    assert!(auc >= 0.95, "at-risk vs healthy ROC-AUC {auc}");
    let (_, texts) = top.unwrap();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("front-left brake pad wear")),
        "{texts:?}"
    );

    // Evaluation on the 90 held-out days against the failures as ground truth.
    // Precursors: a month ahead for every other failure (warned in time), three days ahead
    // for a quarter (too late), none for the rest.
    let precursor = |n: usize, at: DateTime<Utc>| match n % 4 {
        0 | 2 => Some(at - Duration::days(30)),
        1 => Some(at - Duration::days(3)),
        _ => None,
    };
    let truth_text: String = fleet
        .failures
        .iter()
        .enumerate()
        .map(|(n, (i, at))| {
            format!(
                "{{\"vin\":\"{}\",\"component\":\"brakes\",\"failed_at\":\"{}\",\"odometer_km\":0,\"precursor_start\":{},\"cause\":\"pads\",\"repaired_at\":\"{}\"}}\n",
                vin(*i),
                at.to_rfc3339(),
                precursor(n, *at).map_or("null".into(), |p| format!("\"{}\"", p.to_rfc3339())),
                (*at + Duration::hours(2)).to_rfc3339()
            )
        })
        .collect();
    let eval_spec = EvalSpec {
        window: Window {
            from: train_end,
            to: end,
            cadence_days: 1,
        },
        truth: Some(Truth::parse(&truth_text, "truth").unwrap()),
        truth_name: "test truth".into(),
        k: Some(3),
        lead_lookback_days: 90,
        min_lead_days: 7.0,
        show_progress: false,
    };
    let report = evaluate::evaluate(&pool, artifact.clone(), &eval_spec)
        .await
        .unwrap();
    let b = report
        .components
        .iter()
        .find(|c| c.component == Component::Brakes)
        .unwrap();
    let h30 = b.horizons.iter().find(|h| h.days == 30).unwrap();
    let expected_failures = fleet
        .failures
        .iter()
        .filter(|(_, at)| *at >= train_end + Duration::days(7) && *at < end)
        .count();
    assert_eq!(h30.model.lead.failures, expected_failures);
    assert_eq!(h30.rules.lead.failures, expected_failures);
    let expected_warned = fleet
        .failures
        .iter()
        .enumerate()
        .filter(|(n, (_, at))| *at >= train_end + Duration::days(7) && *at < end && n % 2 == 0)
        .count();
    assert!(expected_warned > 0 && expected_warned < expected_failures);
    assert_eq!(h30.warned_failures, Some(expected_warned));
    assert!(h30.positives > 0 && h30.snapshots > 1000);
    assert!(
        h30.model.roc_auc.unwrap() > 0.85,
        "held-out ROC-AUC {:?}",
        h30.model.roc_auc
    );
    // The bootstrap interval of the PR-AUC difference brackets the point difference.
    let (lo, hi) = h30
        .pr_auc_difference_90
        .expect("an interval where there are positives");
    let point = h30.model.pr_auc.unwrap() - h30.rules.pr_auc.unwrap();
    assert!(
        lo <= point + 1e-9 && point <= hi + 1e-9,
        "{lo} {point} {hi}"
    );
    assert!(hi - lo < 1.0, "{lo} {hi}");
    assert!(report.table().contains("| brakes | 30 d |"));
}
