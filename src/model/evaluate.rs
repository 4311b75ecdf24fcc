//! Honest evaluation on a later, held-out window: daily snapshots of every vehicle scored by
//! the artifact and by the rule baseline, judged against the simulator's ground truth (or the
//! service records when there is none). Per component and horizon: ROC-AUC, PR-AUC, Brier and
//! calibration, precision at k per week (k: the repairs and preventive jobs the component's
//! workshops took in per week during training), and — at equal alert volume (the model alerts
//! on as many snapshots as the rules do) — the share of failures first alerted at least 7 days
//! ahead and the median lead time.

use super::artifact::Artifact;
use super::dataset::{for_each_history, Window};
use super::features;
use super::labels::{self, Event, EventKind, Truth};
use super::metrics::{self, CalibrationBin, LeadSummary};
use super::rules;
use super::score::Scorer;
use crate::component::Component;
use crate::store::StoreError;
use crate::vehicle::History;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::fmt::Write as _;

/// Bootstrap draws for the PR-AUC difference interval: enough for stable 5% and 95%
/// quantiles, and a few seconds per component on the largest windows.
const DIFFERENCE_REPLICATES: usize = 200;
const DIFFERENCE_SEED: u64 = 20_260_505;

#[derive(Debug)]
pub struct EvalSpec {
    pub window: Window,
    /// Ground truth from the simulator; service records when `None`.
    pub truth: Option<Truth>,
    pub truth_name: String,
    /// Alerts per week the workshops can take in; from the training data when `None`.
    pub k: Option<usize>,
    /// How far before a failure its first alert may lie.
    pub lead_lookback_days: i64,
    pub min_lead_days: f64,
    pub show_progress: bool,
}

/// One snapshot of one component.
#[derive(Debug, Clone, Copy)]
struct EvalRow {
    vehicle: u32,
    day: i32,
    p: [f64; 3],
    rule: f64,
    /// Bit h: an event within horizon h.
    positive: u8,
    broken: bool,
}

/// A failure inside the window, with the span its first alert is searched in.
#[derive(Debug, Clone, Copy)]
struct Episode {
    vehicle: u32,
    failure_at: DateTime<Utc>,
    search_from: DateTime<Utc>,
    /// The truth says precursors began at least `min_lead_days` before the failure, inside
    /// the search span: a warning was there to be caught in time.
    warned: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub roc_auc: Option<f64>,
    pub pr_auc: Option<f64>,
    /// Mean over weeks of the share of positives among the week's k highest scores.
    pub precision_at_k: Option<f64>,
    /// At equal alert volume.
    pub precision: f64,
    pub recall: f64,
    pub lead: LeadSummary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HorizonEval {
    pub days: i64,
    pub snapshots: usize,
    pub positives: usize,
    /// Alerts of each side over all snapshots of the window (the rule baseline's own
    /// volume; the model's threshold is set to match it).
    pub alerts: usize,
    pub model_threshold_at_volume: f64,
    /// Failures whose precursors (by the ground truth) began at least 7 days before them,
    /// inside the span searched for alerts: what either side can catch in time, short of a
    /// lucky alert. `None` without ground truth (or from reports made before it existed).
    #[serde(default)]
    pub warned_failures: Option<usize>,
    pub brier: Option<f64>,
    pub ece: f64,
    pub calibration: Vec<CalibrationBin>,
    pub model: Side,
    pub rules: Side,
    /// 90% interval of model PR-AUC minus the rules', by a bootstrap over vehicles
    /// (`DIFFERENCE_REPLICATES` draws): how far the point figures can move with the few
    /// failures a window holds. `None` without positives (or in reports made before it).
    #[serde(default)]
    pub pr_auc_difference_90: Option<(f64, f64)>,
    /// Model PR-AUC above the rules' and at least as many failures caught ≥ 7 days ahead;
    /// `None` when the window holds no positive snapshot or no failure to judge by.
    pub model_beats_rules: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentEval {
    pub component: Component,
    pub k: usize,
    pub horizons: Vec<HorizonEval>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub model_version: String,
    pub window: Window,
    pub outcomes: String,
    pub vehicles: usize,
    pub components: Vec<ComponentEval>,
}

struct Collected {
    rows: Vec<Vec<EvalRow>>,
    episodes: Vec<Vec<Episode>>,
}

impl Collected {
    fn add(&mut self, scorer: &Scorer, spec: &EvalSpec, history: &History, vehicle: u32) {
        let w = &spec.window;
        let events: Vec<Vec<Event>> = Component::ALL
            .iter()
            .map(|&c| match &spec.truth {
                Some(t) => t.for_vehicle(&history.vin, c),
                None => labels::service_events(history, c),
            })
            .collect();
        for (c, list) in events.iter().enumerate() {
            let mut previous: Option<DateTime<Utc>> = None;
            for e in list {
                if e.kind == EventKind::Failure
                    && e.at >= w.from + Duration::days(spec.min_lead_days.ceil() as i64)
                    && e.at < w.to
                {
                    let lookback = e.at - Duration::days(spec.lead_lookback_days);
                    let search_from = previous.map_or(lookback, |p| p.max(lookback)).max(w.from);
                    let latest_warning =
                        e.at - Duration::seconds((spec.min_lead_days * 86_400.0) as i64);
                    self.episodes[c].push(Episode {
                        vehicle,
                        failure_at: e.at,
                        search_from,
                        warned: e
                            .precursor_start
                            .is_some_and(|p| p.max(search_from) <= latest_warning),
                    });
                }
                previous = Some(e.fixed_at.unwrap_or(e.at).max(e.at));
            }
        }
        let horizons = scorer.artifact.training.horizons.clone();
        for at in w.snapshots() {
            let snap = features::compute(history, at);
            if !snap.active {
                continue;
            }
            let day = (at - w.from).num_days() as i32;
            for (component, p) in scorer.probabilities(&snap) {
                let c = Component::ALL
                    .iter()
                    .position(|&x| x == component)
                    .unwrap_or(0);
                let mut positive = 0u8;
                for (h, &days) in [7i64, 30, 90].iter().enumerate() {
                    if horizons.contains(&days) && labels::positive(&events[c], at, days) {
                        positive |= 1 << h;
                    }
                }
                self.rows[c].push(EvalRow {
                    vehicle,
                    day,
                    p,
                    rule: rules::score(component, &snap.values),
                    positive,
                    broken: labels::broken(&events[c], at),
                });
            }
        }
    }
}

pub async fn evaluate(
    pool: &PgPool,
    artifact: Artifact,
    spec: &EvalSpec,
) -> Result<EvalReport, EvalError> {
    let scorer = Scorer::new(artifact).map_err(EvalError::Artifact)?;
    let mut collected = Collected {
        rows: vec![Vec::new(); Component::ALL.len()],
        episodes: vec![Vec::new(); Component::ALL.len()],
    };
    let mut vehicle = 0u32;
    let vehicles = for_each_history(
        pool,
        &spec.window,
        spec.window.to,
        spec.show_progress,
        |h| {
            collected.add(&scorer, spec, h, vehicle);
            vehicle += 1;
        },
    )
    .await?;
    Ok(summarise(&scorer, spec, collected, vehicles))
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Artifact(super::artifact::ArtifactError),
}

fn summarise(scorer: &Scorer, spec: &EvalSpec, c: Collected, vehicles: usize) -> EvalReport {
    let w = &spec.window;
    let mut components = Vec::new();
    for (ci, &component) in Component::ALL.iter().enumerate() {
        let rows = &c.rows[ci];
        if rows.is_empty() {
            continue;
        }
        let k = spec
            .k
            .unwrap_or_else(|| scorer.artifact.data.weekly_jobs(component).round() as usize)
            .max(1);
        let mut horizons = Vec::new();
        for (h, days) in [7i64, 30, 90].into_iter().enumerate() {
            let last_day = (w.to - w.from).num_days() - days;
            let eligible: Vec<&EvalRow> = rows
                .iter()
                .filter(|r| !r.broken && i64::from(r.day) <= last_day)
                .collect();
            if eligible.is_empty() {
                continue;
            }
            let y: Vec<bool> = eligible
                .iter()
                .map(|r| r.positive & (1 << h) != 0)
                .collect();
            let model: Vec<f64> = eligible.iter().map(|r| r.p[h]).collect();
            let rule: Vec<f64> = eligible.iter().map(|r| r.rule).collect();
            // Equal volume over the whole alert stream (every snapshot of a working part in
            // the window), the same stream lead times are measured on.
            let stream: Vec<&EvalRow> = rows.iter().filter(|r| !r.broken).collect();
            let alerts = stream.iter().filter(|r| r.rule >= 1.0).count();
            let stream_model: Vec<f64> = stream.iter().map(|r| r.p[h]).collect();
            let threshold = metrics::threshold_for_volume(&stream_model, alerts);
            let side = |scores: &[f64], thr: f64, pick: &dyn Fn(&EvalRow) -> f64| {
                let confusion = metrics::Confusion::at(scores, &y, thr);
                Side {
                    roc_auc: metrics::roc_auc(scores, &y),
                    pr_auc: metrics::average_precision(scores, &y),
                    precision_at_k: weekly_precision_at_k(&eligible, &y, scores, k),
                    precision: confusion.precision(),
                    recall: confusion.recall(),
                    lead: lead_times(rows, &c.episodes[ci], w.from, thr, pick, spec.min_lead_days),
                }
            };
            let model_side = side(&model, threshold, &|r: &EvalRow| r.p[h]);
            let rules_side = side(&rule, 1.0, &|r: &EvalRow| r.rule);
            let (calibration, ece) = metrics::calibration(&model, &y, 10);
            let vehicles_of: Vec<u32> = eligible.iter().map(|r| r.vehicle).collect();
            let pr_auc_difference_90 = metrics::average_precision_difference_interval(
                &model,
                &rule,
                &y,
                &vehicles_of,
                DIFFERENCE_REPLICATES,
                0.9,
                DIFFERENCE_SEED,
            );
            let beats = match (model_side.pr_auc, rules_side.pr_auc) {
                (Some(m), Some(r)) if model_side.lead.failures > 0 => Some(
                    m > r
                        && model_side.lead.caught_ahead_share >= rules_side.lead.caught_ahead_share,
                ),
                _ => None,
            };
            horizons.push(HorizonEval {
                days,
                snapshots: eligible.len(),
                positives: y.iter().filter(|&&v| v).count(),
                alerts,
                model_threshold_at_volume: threshold,
                warned_failures: spec
                    .truth
                    .is_some()
                    .then(|| c.episodes[ci].iter().filter(|e| e.warned).count()),
                brier: metrics::brier(&model, &y),
                ece,
                calibration,
                model: model_side,
                rules: rules_side,
                pr_auc_difference_90,
                model_beats_rules: beats,
            });
        }
        components.push(ComponentEval {
            component,
            k,
            horizons,
        });
    }
    EvalReport {
        model_version: scorer.version().to_owned(),
        window: *w,
        outcomes: spec.truth_name.clone(),
        vehicles,
        components,
    }
}

/// Mean over weekly snapshot days of precision among the day's k highest scores.
fn weekly_precision_at_k(rows: &[&EvalRow], y: &[bool], scores: &[f64], k: usize) -> Option<f64> {
    let mut by_day: std::collections::BTreeMap<i32, (Vec<f64>, Vec<bool>)> = Default::default();
    for ((r, &label), &s) in rows.iter().zip(y).zip(scores) {
        if r.day % 7 == 0 {
            let e = by_day.entry(r.day).or_default();
            e.0.push(s);
            e.1.push(label);
        }
    }
    let weekly: Vec<f64> = by_day
        .values()
        .filter_map(|(s, l)| metrics::precision_at_k(s, l, k))
        .collect();
    (!weekly.is_empty()).then(|| weekly.iter().sum::<f64>() / weekly.len() as f64)
}

/// Days from each failure's first alert (score ≥ threshold in its search span) to the failure.
/// `rows` are in vehicle order (as collected).
fn lead_times(
    rows: &[EvalRow],
    episodes: &[Episode],
    from: DateTime<Utc>,
    threshold: f64,
    score: &dyn Fn(&EvalRow) -> f64,
    min_days: f64,
) -> LeadSummary {
    let leads: Vec<Option<f64>> = episodes
        .iter()
        .map(|e| {
            let lo = rows.partition_point(|r| r.vehicle < e.vehicle);
            let hi = rows.partition_point(|r| r.vehicle <= e.vehicle);
            rows[lo..hi]
                .iter()
                .filter(|r| !r.broken)
                .map(|r| (from + Duration::days(i64::from(r.day)), r))
                .filter(|(t, _)| *t >= e.search_from && *t < e.failure_at)
                .filter(|(_, r)| score(r) >= threshold)
                .map(|(t, _)| t)
                .min()
                .map(|t| (e.failure_at - t).num_seconds() as f64 / 86_400.0)
        })
        .collect();
    metrics::lead_summary(&leads, min_days)
}

fn verdict(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "–",
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into())
}

fn lead(l: &LeadSummary) -> String {
    if l.failures == 0 {
        return "–".into();
    }
    format!(
        "{:.0}% ({}/{}), median {}",
        100.0 * l.caught_ahead_share,
        (l.caught_ahead_share * l.failures as f64).round() as usize,
        l.failures,
        l.median_lead_days
            .map(|d| format!("{d:.0} d"))
            .unwrap_or_else(|| "–".into())
    )
}

impl EvalReport {
    /// The side-by-side table: model vs rule baseline per component and horizon.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| component | horizon | snapshots (pos.) | ROC-AUC model / rules | PR-AUC model / rules | PR-AUC difference, 90% interval | Brier | P@k model / rules (k) | alerts each | caught ≥ 7 d ahead, model | caught ≥ 7 d ahead, rules | warned ≥ 7 d ahead | model beats rules |"
        );
        let _ = writeln!(
            s,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- |"
        );
        for c in &self.components {
            for h in &c.horizons {
                let _ = writeln!(
                    s,
                    "| {} | {} d | {} ({}) | {} / {} | {} / {} | {} | {} | {} / {} ({}) | {} | {} | {} | {} | {} |",
                    c.component,
                    h.days,
                    h.snapshots,
                    h.positives,
                    opt(h.model.roc_auc),
                    opt(h.rules.roc_auc),
                    opt(h.model.pr_auc),
                    opt(h.rules.pr_auc),
                    match h.pr_auc_difference_90 {
                        Some((lo, hi)) => format!("{lo:+.3} to {hi:+.3}"),
                        None => "–".into(),
                    },
                    opt(h.brier),
                    opt(h.model.precision_at_k),
                    opt(h.rules.precision_at_k),
                    c.k,
                    h.alerts,
                    lead(&h.model.lead),
                    lead(&h.rules.lead),
                    match (h.warned_failures, h.model.lead.failures) {
                        (Some(w), n) if n > 0 => format!("{w}/{n}"),
                        _ => "–".into(),
                    },
                    verdict(h.model_beats_rules)
                );
            }
        }
        s
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Evaluation of {}\n", self.model_version);
        let _ = writeln!(
            s,
            "Held-out window {} to {}, daily snapshots of {} vehicles; outcomes from {}.\n\
             Rules: fixed thresholds on wear, service intervals and active fault codes \
             (`src/model/rules.rs`). Alerts at equal volume: the model alerts on as many \
             snapshots as the rules. Snapshots taken while the part was broken are left out; \
             a failure's first alert is searched up to 90 days before it, after its previous \
             repair. \"Warned\" counts the failures whose precursors began at least 7 days \
             before them (by the ground truth): what either side can catch in time. The PR-AUC \
             difference (model minus rules) has a 90% interval from a bootstrap over vehicles: \
             with a few dozen failures, differences inside it are not told apart.\n",
            self.window.from.date_naive(),
            self.window.to.date_naive(),
            self.vehicles,
            self.outcomes
        );
        s.push_str(&self.table());
        let verdicts: Vec<String> = self
            .components
            .iter()
            .filter_map(|c| {
                let h = c.horizons.iter().find(|h| h.days == 30)?;
                Some(format!(
                    "{}: {}",
                    c.component,
                    match h.model_beats_rules {
                        Some(true) => "beats the rules",
                        Some(false) => "does not beat the rules",
                        None => "no failures to judge by",
                    }
                ))
            })
            .collect();
        let _ = writeln!(s, "\nAt 30 days: {}.", verdicts.join("; "));
        s
    }
}
