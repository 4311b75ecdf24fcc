//! Training one binary classifier ("fails within h days", "fails within 30 cycles"): missing
//! values imputed with training medians, a logistic regression (linfa-logistic) as the
//! calibrated baseline, a balanced forest of linfa-trees where it ranks better on validation,
//! and the alert threshold chosen on validation. Nothing here knows about vehicles: the fleet
//! model and the C-MAPSS check both train through `train_binary`.
//!
//! Class imbalance: the logistic regression is fitted on all positives and at most
//! `max_negative_ratio` negatives per positive, then its intercept is shifted by
//! ln(kept share of negatives) (King and Zeng's prior correction), so its probabilities stay
//! calibrated for the real base rate. The forest sees balanced bootstraps and is recalibrated
//! on the validation split with Platt scaling.

use super::forest::{Forest, ForestParams};
use super::metrics::{self, CalibrationBin};
use ndarray::{Array1, Array2, ArrayView2};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("logistic regression: {0}")]
    Logistic(#[from] aftercare_learners::LogisticError),
    #[error(transparent)]
    Forest(#[from] super::forest::ForestError),
    #[error("no training rows")]
    Empty,
    #[error("training and validation rows have different widths")]
    Width,
}

/// Median imputation, then standardisation (used by the logistic model and its attribution).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prep {
    pub median: Vec<f64>,
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
}

impl Prep {
    pub fn fit(x: ArrayView2<f64>) -> Prep {
        let p = x.ncols();
        let (mut median, mut mean, mut scale) = (vec![0.0; p], vec![0.0; p], vec![1.0; p]);
        for j in 0..p {
            let mut col: Vec<f64> = x
                .column(j)
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            if col.is_empty() {
                continue;
            }
            col.sort_by(f64::total_cmp);
            median[j] = metrics::median_sorted(&col).unwrap_or(0.0);
            let n = x.nrows() as f64;
            let column = x.column(j);
            let (s, ss) = column
                .iter()
                .map(|&v| if v.is_finite() { v } else { median[j] })
                .fold((0.0, 0.0), |(s, ss), v| (s + v, ss + v * v));
            mean[j] = s / n;
            let sd = (ss / n - mean[j] * mean[j]).max(0.0).sqrt();
            scale[j] = if sd > 1e-9 { sd } else { 1.0 };
        }
        Prep {
            median,
            mean,
            scale,
        }
    }

    /// Missing values replaced by the training median, in place.
    pub fn impute(&self, row: &mut [f64]) {
        for (v, m) in row.iter_mut().zip(&self.median) {
            if !v.is_finite() {
                *v = *m;
            }
        }
    }

    pub fn impute_matrix(&self, x: ArrayView2<f64>) -> Array2<f64> {
        let mut out = x.to_owned();
        for mut row in out.rows_mut() {
            if let Some(slice) = row.as_slice_mut() {
                self.impute(slice);
            }
        }
        out
    }

    /// Standardised value of feature `j` (after imputation).
    pub fn z(&self, j: usize, v: f64) -> f64 {
        (v - self.mean[j]) / self.scale[j]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    /// On standardised features.
    pub coef: Vec<f64>,
    pub intercept: f64,
}

/// p = σ(a · logit(raw) + b).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Learner {
    Logistic(Logistic),
    Forest {
        forest: Forest,
        platt: Platt,
    },
    /// Too few positives to learn from: the smoothed training base rate.
    Prior {
        p: f64,
    },
    /// The higher of a learned model's probability and the calibrated rule's: risk is high
    /// when either says so. Where failure modes shift over time (a fleet ageing into pack
    /// fade the training years rarely saw), the rule keeps catching what the learner was
    /// not shown, and the learner adds what the rule misses.
    Either {
        learned: Box<Learner>,
        rule: Logistic,
    },
}

impl Learner {
    pub fn name(&self) -> &'static str {
        match self {
            Learner::Logistic(_) => "logistic",
            Learner::Forest { .. } => "forest",
            Learner::Prior { .. } => "prior",
            Learner::Either { .. } => EITHER,
        }
    }
}

/// Validation figures of one candidate learner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub learner: String,
    pub rows: usize,
    pub positives: usize,
    pub roc_auc: Option<f64>,
    pub pr_auc: Option<f64>,
    pub brier: Option<f64>,
    /// Expected calibration error (probabilities only).
    pub ece: Option<f64>,
    pub calibration: Vec<CalibrationBin>,
    /// At the chosen threshold.
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryModel {
    pub prep: Prep,
    pub learner: Learner,
    /// Alert when the probability is at least this (best F1 on validation).
    pub threshold: f64,
    pub train_rows: usize,
    pub train_positives: usize,
    /// The chosen learner first, then the others tried.
    pub validation: Vec<Validation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// L2 penalty of the logistic regression (on standardised features, summed loss).
    pub alpha: f64,
    pub max_negative_ratio: f64,
    /// `None`: logistic regression only.
    pub forest: Option<ForestParams>,
    /// Another learner replaces the logistic model only when its validation PR-AUC is higher
    /// by at least this much.
    pub forest_margin: f64,
    /// Below this many training positives the learner is the base rate.
    pub min_positives: usize,
    /// Negatives kept for the logistic fit however few the positives: undersampling a rare
    /// outcome to 20:1 would leave a few hundred rows to learn from. (0 in artifacts made
    /// before it existed.)
    #[serde(default)]
    pub min_negatives: usize,
    /// A column holding a domain score (the fleet model's rule ratio). When set, a logistic
    /// regression on that column alone is a candidate too: a calibrated rule, chosen when it
    /// validates better than the learners on all features (which rare outcomes can overfit).
    #[serde(default)]
    pub anchor: Option<usize>,
    /// Once a logistic candidate is chosen on validation, fit it again on the training and
    /// validation rows together: the latest failures are the ones most like the next, and a
    /// rare outcome cannot spare them. Validation figures stay those of the split fit.
    #[serde(default)]
    pub refit: bool,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            alpha: 1.0,
            max_negative_ratio: 20.0,
            forest: Some(ForestParams::default()),
            forest_margin: 0.01,
            min_positives: 5,
            min_negatives: 10_000,
            anchor: None,
            refit: false,
            seed: 7,
        }
    }
}

/// Rows and labels of one split.
#[derive(Clone, Copy)]
pub struct Split<'a> {
    pub x: ArrayView2<'a, f64>,
    pub y: &'a [bool],
}

pub fn train_binary(
    train: Split,
    valid: Split,
    cfg: &TrainConfig,
) -> Result<BinaryModel, TrainError> {
    train_binary_with(train, valid, cfg, &[])
}

/// `train_binary`, with one more candidate when `compact` names columns: a logistic
/// regression on those alone (the fleet model's rule ratio with its component's signal levels
/// and trends). Between the rule alone and every feature, it is what a rare outcome with a
/// few dozen positives can learn without fitting noise.
pub fn train_binary_with(
    train: Split,
    valid: Split,
    cfg: &TrainConfig,
    compact: &[usize],
) -> Result<BinaryModel, TrainError> {
    if train.x.nrows() == 0 {
        return Err(TrainError::Empty);
    }
    let prep = Prep::fit(train.x);
    let xt = prep.impute_matrix(train.x);
    let xv = prep.impute_matrix(valid.x);
    let positives = train.y.iter().filter(|&&y| y).count();
    let negatives = train.y.len() - positives;
    let mut candidates: Vec<(Learner, Vec<f64>)> = Vec::new();
    // Candidates reported under another name than their learner's kind.
    let mut names: std::collections::BTreeMap<usize, &str> = Default::default();
    // Logistic candidates and the columns they read (`None`: all), for the refit.
    let mut logistic_columns: std::collections::BTreeMap<usize, Option<Vec<usize>>> =
        Default::default();
    // For the higher-of-two candidate: which candidates it combines (learned, rule).
    let mut either_parts: Option<(usize, usize)> = None;
    let base_rate = (positives as f64 + 0.5) / (train.y.len() as f64 + 1.0);
    if positives < cfg.min_positives || negatives == 0 {
        candidates.push((Learner::Prior { p: base_rate }, vec![base_rate; xv.nrows()]));
    } else {
        let logistic = fit_logistic(&prep, xt.view(), train.y, cfg, None)?;
        let scores = predict_rows(&prep, &Learner::Logistic(logistic.clone()), xv.view());
        candidates.push((Learner::Logistic(logistic), scores));
        logistic_columns.insert(0, None);
        let anchored = cfg.anchor.filter(|&a| a < xt.ncols()).map(|a| vec![a]);
        let compact: Vec<usize> = compact
            .iter()
            .copied()
            .filter(|&j| j < xt.ncols())
            .collect();
        for (name, columns) in [(ANCHORED, anchored), (COMPACT, Some(compact))] {
            let Some(columns) = columns.filter(|c| !c.is_empty()) else {
                continue;
            };
            let fitted = fit_logistic(&prep, xt.view(), train.y, cfg, Some(&columns))?;
            let scores = predict_rows(&prep, &Learner::Logistic(fitted.clone()), xv.view());
            candidates.push((Learner::Logistic(fitted), scores));
            names.insert(candidates.len() - 1, name);
            logistic_columns.insert(candidates.len() - 1, Some(columns));
        }
        if let Some(params) = &cfg.forest {
            let classes: Vec<usize> = train.y.iter().map(|&y| usize::from(y)).collect();
            let targets: Vec<f64> = classes.iter().map(|&c| c as f64).collect();
            let forest = Forest::fit(xt.view(), &classes, &targets, params)?;
            let raw: Vec<f64> = xv
                .rows()
                .into_iter()
                .map(|r| forest.predict(&r.to_vec()))
                .collect();
            let platt = fit_platt(&raw, valid.y);
            let scores = raw.iter().map(|&r| platt.apply(r)).collect();
            candidates.push((Learner::Forest { forest, platt }, scores));
        }
        // The best learner on validation, or the calibrated rule: whichever is higher.
        let rule_at = names.iter().find(|(_, &n)| n == ANCHORED).map(|(&i, _)| i);
        let best_learned = (0..candidates.len())
            .filter(|&i| Some(i) != rule_at)
            .map(|i| {
                let ap = metrics::average_precision(&candidates[i].1, valid.y).unwrap_or(0.0);
                (i, ap)
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i);
        if let (Some(r), Some(b)) = (rule_at, best_learned) {
            if let Learner::Logistic(rule) = &candidates[r].0 {
                let scores = candidates[b]
                    .1
                    .iter()
                    .zip(&candidates[r].1)
                    .map(|(a, b)| a.max(*b))
                    .collect();
                let either = Learner::Either {
                    learned: Box::new(candidates[b].0.clone()),
                    rule: rule.clone(),
                };
                either_parts = Some((b, r));
                candidates.push((either, scores));
            }
        }
        candidates.push((Learner::Prior { p: base_rate }, vec![base_rate; xv.nrows()]));
    }
    let mut reports: Vec<(usize, Validation, f64)> = candidates
        .iter()
        .enumerate()
        .map(|(i, (learner, scores))| {
            let threshold = choose_threshold(
                scores,
                valid.y,
                || predict_rows(&prep, learner, xt.view()),
                train.y,
            );
            (
                i,
                validate(
                    names.get(&i).copied().unwrap_or(learner.name()),
                    scores,
                    valid.y,
                    threshold,
                    true,
                ),
                threshold,
            )
        })
        .collect();
    // The first candidate (logistic) unless the forest beats it on PR-AUC by the margin.
    let base = reports[0].1.pr_auc.unwrap_or(0.0);
    let is_prior = |i: usize| matches!(candidates[i].0, Learner::Prior { .. });
    let mut chosen = reports
        .iter()
        .skip(1)
        .filter(|(i, ..)| !is_prior(*i))
        .filter(|(_, v, _)| v.pr_auc.unwrap_or(0.0) >= base + cfg.forest_margin)
        .max_by(|a, b| {
            a.1.pr_auc
                .unwrap_or(0.0)
                .total_cmp(&b.1.pr_auc.unwrap_or(0.0))
        })
        .map(|(i, ..)| *i)
        .unwrap_or(0);
    // A learner that ranks validation no better than chance (too few positives to learn
    // from, or a drift it fitted the wrong way) is replaced by the best candidate that does
    // rank better than chance, else by the base rate: a confident wrong ranking is worse
    // than none.
    let chance = |i: usize| {
        reports
            .iter()
            .find(|r| r.0 == i)
            .is_some_and(|r| r.1.roc_auc.is_some_and(|auc| auc <= 0.5))
    };
    if chance(chosen) {
        chosen = reports
            .iter()
            .filter(|(i, ..)| !is_prior(*i) && !chance(*i))
            .max_by(|a, b| {
                a.1.pr_auc
                    .unwrap_or(0.0)
                    .total_cmp(&b.1.pr_auc.unwrap_or(0.0))
            })
            .map(|(i, ..)| *i)
            .or_else(|| (0..candidates.len()).find(|&i| is_prior(i)))
            .unwrap_or(chosen);
    }
    let pos = reports.iter().position(|(i, ..)| *i == chosen).unwrap_or(0);
    let first = reports.remove(pos);
    let threshold = first.2;
    let mut validation = vec![first.1];
    validation.extend(reports.into_iter().map(|(_, v, _)| v));
    let mut learner = candidates.swap_remove(chosen).0;
    if cfg.refit {
        let x = ndarray::concatenate(ndarray::Axis(0), &[xt.view(), xv.view()])
            .map_err(|_| TrainError::Width)?;
        let y: Vec<bool> = train.y.iter().chain(valid.y).copied().collect();
        let refit = |i: usize| -> Result<Option<Logistic>, TrainError> {
            logistic_columns
                .get(&i)
                .map(|columns| fit_logistic(&prep, x.view(), &y, cfg, columns.as_deref()))
                .transpose()
        };
        match &mut learner {
            Learner::Logistic(l) => {
                if let Some(again) = refit(chosen)? {
                    *l = again;
                }
            }
            Learner::Either { learned, rule } => {
                if let Some((b, r)) = either_parts {
                    if let Some(again) = refit(b)? {
                        **learned = Learner::Logistic(again);
                    }
                    if let Some(again) = refit(r)? {
                        *rule = again;
                    }
                }
            }
            Learner::Forest { .. } | Learner::Prior { .. } => {}
        }
    }
    Ok(BinaryModel {
        prep,
        learner,
        threshold,
        train_rows: train.y.len(),
        train_positives: positives,
        validation,
    })
}

fn choose_threshold(
    valid_scores: &[f64],
    valid_y: &[bool],
    train_scores: impl FnOnce() -> Vec<f64>,
    train_y: &[bool],
) -> f64 {
    metrics::best_f1_threshold(valid_scores, valid_y)
        .or_else(|| metrics::best_f1_threshold(&train_scores(), train_y))
        .map(|(t, _)| t)
        .unwrap_or(1.0)
}

/// Validation figures of `scores` alerting at `threshold`. Calibration (Brier, bins) only for
/// probabilities; a rule's ratio scores are ranked, not calibrated.
pub fn validate(
    name: &str,
    scores: &[f64],
    y: &[bool],
    threshold: f64,
    probabilities: bool,
) -> Validation {
    let (calibration, ece) = if probabilities {
        let (bins, ece) = metrics::calibration(scores, y, 10);
        (bins, Some(ece))
    } else {
        (Vec::new(), None)
    };
    let c = metrics::Confusion::at(scores, y, threshold);
    Validation {
        learner: name.to_owned(),
        rows: y.len(),
        positives: y.iter().filter(|&&v| v).count(),
        roc_auc: metrics::roc_auc(scores, y),
        pr_auc: metrics::average_precision(scores, y),
        brier: probabilities.then(|| metrics::brier(scores, y)).flatten(),
        ece,
        calibration,
        precision: c.precision(),
        recall: c.recall(),
        f1: c.f1(),
    }
}

fn predict_rows(prep: &Prep, learner: &Learner, x: ArrayView2<f64>) -> Vec<f64> {
    x.rows()
        .into_iter()
        .map(|r| probability(prep, learner, &r.to_vec()))
        .collect()
}

/// The name a rule-anchored candidate is reported under.
pub const ANCHORED: &str = "rule-anchored logistic";
/// The name the compact candidate (rule ratio, signal levels and trends) is reported under.
pub const COMPACT: &str = "compact logistic";
/// The name of the higher-of-two candidate: the best learner or the calibrated rule.
pub const EITHER: &str = "learned or rule";

/// `only`: fit on those columns (the other coefficients stay zero).
fn fit_logistic(
    prep: &Prep,
    x: ArrayView2<f64>,
    y: &[bool],
    cfg: &TrainConfig,
    only: Option<&[usize]>,
) -> Result<Logistic, TrainError> {
    let pos: Vec<usize> = (0..y.len()).filter(|&i| y[i]).collect();
    let mut neg: Vec<usize> = (0..y.len()).filter(|&i| !y[i]).collect();
    let total_neg = neg.len();
    let keep = ((pos.len() as f64 * cfg.max_negative_ratio).ceil() as usize)
        .max(cfg.min_negatives)
        .clamp(1, total_neg);
    if keep < total_neg {
        neg.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed));
        neg.truncate(keep);
    }
    let rows: Vec<usize> = pos.iter().chain(&neg).copied().collect();
    let columns: Vec<usize> = match only {
        Some(only) => only.to_vec(),
        None => (0..x.ncols()).collect(),
    };
    let z = Array2::from_shape_fn((rows.len(), columns.len()), |(r, k)| {
        prep.z(columns[k], x[(rows[r], columns[k])])
    });
    let labels: Array1<bool> = rows.iter().map(|&r| y[r]).collect();
    let (fitted, intercept) = aftercare_learners::logistic(z, labels, cfg.alpha, 300)?;
    let mut coef = vec![0.0; x.ncols()];
    for (&j, c) in columns.iter().zip(fitted) {
        coef[j] = c;
    }
    let correction = (keep as f64 / total_neg as f64).ln();
    Ok(Logistic {
        coef,
        intercept: intercept + correction,
    })
}

fn clip_logit(p: f64) -> f64 {
    let p = p.clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln()
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Platt {
    pub const IDENTITY: Platt = Platt { a: 1.0, b: 0.0 };

    pub fn apply(&self, raw: f64) -> f64 {
        sigmoid(self.a * clip_logit(raw) + self.b)
    }
}

/// One-feature logistic regression of the outcome on logit(raw score); identity when the
/// validation split has a single class.
fn fit_platt(raw: &[f64], y: &[bool]) -> Platt {
    let z = Array2::from_shape_fn((raw.len(), 1), |(i, _)| clip_logit(raw[i]));
    let labels: Array1<bool> = y.iter().copied().collect();
    match aftercare_learners::logistic(z, labels, 1e-3, 200) {
        Ok((a, b)) => Platt {
            a: a.first().copied().unwrap_or(1.0),
            b,
        },
        Err(_) => Platt::IDENTITY,
    }
}

/// Probability for one raw feature row (missing values as NaN).
pub fn probability(prep: &Prep, learner: &Learner, raw: &[f64]) -> f64 {
    let mut row = raw.to_vec();
    prep.impute(&mut row);
    imputed_probability(prep, learner, &row)
}

fn imputed_probability(prep: &Prep, learner: &Learner, row: &[f64]) -> f64 {
    match learner {
        Learner::Logistic(l) => logistic_probability(prep, l, row),
        Learner::Forest { forest, platt } => platt.apply(forest.predict(row)),
        Learner::Prior { p } => *p,
        Learner::Either { learned, rule } => {
            imputed_probability(prep, learned, row).max(logistic_probability(prep, rule, row))
        }
    }
}

fn logistic_probability(prep: &Prep, l: &Logistic, row: &[f64]) -> f64 {
    let z: f64 = l
        .coef
        .iter()
        .enumerate()
        .map(|(j, c)| c * prep.z(j, row[j]))
        .sum();
    sigmoid(z + l.intercept)
}

impl BinaryModel {
    pub fn probability(&self, raw: &[f64]) -> f64 {
        probability(&self.prep, &self.learner, raw)
    }

    /// Per-feature contributions to this row's score: coefficient × standardised value for
    /// the logistic model (log-odds), path contributions for the forest (probability points).
    /// For the higher-of-two model, those of the side that gave the probability.
    pub fn contributions(&self, raw: &[f64]) -> Vec<f64> {
        let mut row = raw.to_vec();
        self.prep.impute(&mut row);
        contributions(&self.prep, &self.learner, &row)
    }
}

fn contributions(prep: &Prep, learner: &Learner, row: &[f64]) -> Vec<f64> {
    match learner {
        Learner::Logistic(l) => l
            .coef
            .iter()
            .enumerate()
            .map(|(j, c)| c * prep.z(j, row[j]))
            .collect(),
        Learner::Forest { forest, .. } => {
            let mut out = vec![0.0; row.len()];
            forest.contributions(row, &mut out);
            out
        }
        Learner::Prior { .. } => vec![0.0; row.len()],
        Learner::Either { learned, rule } => {
            if logistic_probability(prep, rule, row) > imputed_probability(prep, learned, row) {
                contributions(prep, &Learner::Logistic(rule.clone()), row)
            } else {
                contributions(prep, learned, row)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Trains on the rows of `xt` and validates on those of `xv`; `y` covers both, in order.
    fn fit_halves<'a>(
        xt: ArrayView2<'a, f64>,
        xv: ArrayView2<'a, f64>,
        y: &'a [bool],
        cfg: &TrainConfig,
    ) -> BinaryModel {
        fit_halves_with(xt, xv, y, cfg, &[])
    }

    /// The validation figures of the candidate reported as `learner`.
    fn reported<'m>(m: &'m BinaryModel, learner: &str) -> &'m Validation {
        m.validation
            .iter()
            .find(|v| v.learner == learner)
            .unwrap_or_else(|| panic!("{learner} is reported: {:?}", m.validation))
    }

    /// `fit_halves` with a compact candidate on `compact`.
    fn fit_halves_with<'a>(
        xt: ArrayView2<'a, f64>,
        xv: ArrayView2<'a, f64>,
        y: &'a [bool],
        cfg: &TrainConfig,
        compact: &[usize],
    ) -> BinaryModel {
        let (yt, yv) = y.split_at(xt.nrows());
        train_binary_with(Split { x: xt, y: yt }, Split { x: xv, y: yv }, cfg, compact).unwrap()
    }

    /// 30,000 rows of `p` uniform columns, each row's outcome drawn by `outcome`; logistic
    /// learners fitted on the first half and validated on the second, with the rule anchor
    /// on column 0 and a compact candidate on `compact` (none when empty).
    fn fit_anchored(
        seed: u64,
        p: usize,
        compact: &[usize],
        outcome: impl Fn(&mut ChaCha8Rng, ndarray::ArrayView1<f64>) -> bool,
    ) -> BinaryModel {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = 30_000;
        let x = Array2::from_shape_fn((n, p), |_| rng.gen::<f64>());
        let y: Vec<bool> = x.rows().into_iter().map(|r| outcome(&mut rng, r)).collect();
        let (xt, xv) = x.view().split_at(ndarray::Axis(0), n / 2);
        let cfg = TrainConfig {
            forest: None,
            anchor: Some(0),
            ..TrainConfig::default()
        };
        fit_halves_with(xt, xv, &y, &cfg, compact)
    }

    /// Outcome drawn from a known logistic model with a 3% base rate: the fitted model ranks
    /// well, its probabilities are calibrated despite negative undersampling (mean predicted
    /// within 20% of the observed rate), and its strongest coefficient is the true driver.
    #[test]
    fn logistic_recovers_a_known_signal_and_stays_calibrated() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 20_000;
        let x = Array2::from_shape_fn((n, 3), |_| rng.gen::<f64>() * 2.0 - 1.0);
        let y: Vec<bool> = (0..n)
            .map(|i| rng.gen::<f64>() < sigmoid(-4.0 + 2.5 * x[(i, 0)] - 0.5 * x[(i, 1)]))
            .collect();
        let half = n / 2;
        let (xt, xv) = x.view().split_at(ndarray::Axis(0), half);
        let cfg = TrainConfig {
            forest: None,
            max_negative_ratio: 5.0,
            ..TrainConfig::default()
        };
        let m = fit_halves(xt, xv, &y, &cfg);
        let v = &m.validation[0];
        assert_eq!(v.learner, "logistic");
        assert!(v.roc_auc.unwrap() > 0.75, "{v:?}");
        let Learner::Logistic(l) = &m.learner else {
            panic!("expected logistic")
        };
        assert!(
            l.coef[0] > 0.5 && l.coef[0] > 3.0 * l.coef[2].abs(),
            "{l:?}"
        );
        let mean_p: f64 = xv
            .rows()
            .into_iter()
            .map(|r| m.probability(&r.to_vec()))
            .sum::<f64>()
            / half as f64;
        let observed = y[half..].iter().filter(|&&b| b).count() as f64 / half as f64;
        assert!(
            (mean_p / observed - 1.0).abs() < 0.2,
            "mean predicted {mean_p} vs observed {observed}"
        );
        // Contributions rank the driver first for a row high in x0.
        let c = m.contributions(&[0.9, 0.0, 0.0]);
        assert!(c[0] > c[1].abs() && c[0] > c[2].abs());
    }

    #[test]
    fn missing_values_are_imputed_and_few_positives_give_the_base_rate() {
        let x = ndarray::array![[1.0, f64::NAN], [3.0, 2.0], [f64::NAN, 4.0], [5.0, 6.0]];
        let prep = Prep::fit(x.view());
        assert_eq!(prep.median, vec![3.0, 4.0]);
        let mut row = [f64::NAN, 1.0];
        prep.impute(&mut row);
        assert_eq!(row, [3.0, 1.0]);
        let y = [false, true, false, false];
        let m = train_binary(
            Split { x: x.view(), y: &y },
            Split { x: x.view(), y: &y },
            &TrainConfig::default(),
        )
        .unwrap();
        assert_eq!(m.learner, Learner::Prior { p: 1.5 / 5.0 });
    }

    /// A signal that flips between the splits: the fitted model ranks validation backwards,
    /// so the base rate is chosen instead (and the learners tried stay in the report).
    #[test]
    fn a_learner_worse_than_chance_on_validation_gives_the_base_rate() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let n = 4_000;
        let x = Array2::from_shape_fn((n, 2), |_| rng.gen::<f64>() * 2.0 - 1.0);
        let half = n / 2;
        let y: Vec<bool> = (0..n)
            .map(|i| {
                let sign = if i < half { 1.0 } else { -1.0 };
                rng.gen::<f64>() < sigmoid(-3.0 + sign * 3.0 * x[(i, 0)])
            })
            .collect();
        let (xt, xv) = x.view().split_at(ndarray::Axis(0), half);
        let cfg = TrainConfig {
            forest: None,
            ..TrainConfig::default()
        };
        let m = fit_halves(xt, xv, &y, &cfg);
        assert!(
            matches!(m.learner, Learner::Prior { .. }),
            "{:?}",
            m.learner
        );
        let logistic = reported(&m, "logistic");
        assert!(logistic.roc_auc.unwrap() < 0.3, "{logistic:?}");
        assert_eq!(m.validation[0].learner, "prior");
    }

    /// A rare outcome that one domain score predicts, among many noise columns: the
    /// rule-anchored candidate is tried and reported, and it reads its column only.
    #[test]
    fn a_rule_anchored_candidate_is_tried_and_reads_only_its_column() {
        let m = fit_anchored(11, 40, &[], |rng, x| {
            rng.gen::<f64>() < sigmoid(-12.0 + 8.0 * x[0])
        });
        let anchored = reported(&m, ANCHORED);
        assert!(anchored.roc_auc.unwrap() > 0.8, "{anchored:?}");
        assert!(
            ["logistic", ANCHORED].contains(&m.validation[0].learner.as_str()),
            "{:?}",
            m.validation
        );
        let Learner::Logistic(l) = &m.learner else {
            panic!("expected a logistic model, got {:?}", m.learner)
        };
        assert!(l.coef[0] > 0.0, "{l:?}");
        if m.validation[0].learner == ANCHORED {
            assert!(l.coef[1..].iter().all(|&c| c == 0.0), "{l:?}");
        }
    }

    /// An outcome driven by two of many columns: the compact candidate on those two is tried
    /// and reported, ranks validation well, and reads its columns only.
    #[test]
    fn a_compact_candidate_is_tried_and_reads_only_its_columns() {
        let m = fit_anchored(13, 40, &[0, 1], |rng, x| {
            rng.gen::<f64>() < sigmoid(-12.0 + 5.0 * x[0] + 4.0 * x[1])
        });
        let compact = reported(&m, COMPACT);
        let anchored = reported(&m, ANCHORED);
        assert!(
            compact.roc_auc.unwrap() > anchored.roc_auc.unwrap(),
            "{compact:?} {anchored:?}"
        );
        if m.validation[0].learner == COMPACT {
            let Learner::Logistic(l) = &m.learner else {
                panic!("expected a logistic model, got {:?}", m.learner)
            };
            assert!(l.coef[0] > 0.0 && l.coef[1] > 0.0, "{l:?}");
            assert!(l.coef[2..].iter().all(|&c| c == 0.0), "{l:?}");
        }
    }

    /// A driver that appears only in the later (validation) rows: without the refit the
    /// chosen model cannot weigh it, with the refit it does; the validation figures are the
    /// split fit's either way.
    #[test]
    fn refit_learns_from_validation_rows_and_keeps_split_figures() {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let n = 20_000;
        let half = n / 2;
        // x1 is constant in the training half, varies in the validation half.
        let x = Array2::from_shape_fn((n, 2), |(i, j)| {
            if j == 1 && i < half {
                0.5
            } else {
                rng.gen::<f64>()
            }
        });
        let y: Vec<bool> = (0..n)
            .map(|i| rng.gen::<f64>() < sigmoid(-7.0 + 4.0 * x[(i, 0)] + 4.0 * x[(i, 1)]))
            .collect();
        let (xt, xv) = x.view().split_at(ndarray::Axis(0), half);
        let base = TrainConfig {
            forest: None,
            ..TrainConfig::default()
        };
        let split_only = fit_halves(xt, xv, &y, &base);
        let refitted = fit_halves(
            xt,
            xv,
            &y,
            &TrainConfig {
                refit: true,
                ..base
            },
        );
        assert_eq!(split_only.validation, refitted.validation);
        let coef = |m: &BinaryModel| match &m.learner {
            Learner::Logistic(l) => l.coef.clone(),
            other => panic!("expected a logistic model, got {other:?}"),
        };
        assert!(coef(&split_only)[1].abs() < 1e-6, "{:?}", coef(&split_only));
        assert!(coef(&refitted)[1] > 0.3, "{:?}", coef(&refitted));
    }

    /// Two failure modes: one a learner can pick up from x1, one only the rule column x0
    /// flags. The higher-of-two candidate is tried and reported, its probability is the
    /// higher of its sides', and a row's reasons come from the side that scored it.
    #[test]
    fn the_learned_or_rule_candidate_takes_the_higher_side() {
        let m = fit_anchored(19, 6, &[0, 1], |rng, x| {
            rng.gen::<f64>() < sigmoid(-12.0 + 9.0 * x[1])
                || rng.gen::<f64>() < sigmoid(-14.0 + 12.0 * x[0])
        });
        let either = reported(&m, EITHER);
        assert!(either.roc_auc.unwrap() > 0.8, "{either:?}");

        // Its semantics, on a hand-made model: rule reads x0, learner reads x1.
        let prep = Prep {
            median: vec![0.0; 2],
            mean: vec![0.0; 2],
            scale: vec![1.0; 2],
        };
        let rule = Logistic {
            coef: vec![3.0, 0.0],
            intercept: -3.0,
        };
        let learned = Logistic {
            coef: vec![0.0, 3.0],
            intercept: -3.0,
        };
        let model = BinaryModel {
            prep: prep.clone(),
            learner: Learner::Either {
                learned: Box::new(Learner::Logistic(learned)),
                rule,
            },
            threshold: 0.5,
            train_rows: 0,
            train_positives: 0,
            validation: Vec::new(),
        };
        assert!((model.probability(&[2.0, 0.0]) - sigmoid(3.0)).abs() < 1e-12);
        assert!((model.probability(&[0.0, 2.0]) - sigmoid(3.0)).abs() < 1e-12);
        assert!((model.probability(&[0.0, 0.0]) - sigmoid(-3.0)).abs() < 1e-12);
        assert_eq!(model.contributions(&[2.0, 0.5]), vec![6.0, 0.0]);
        assert_eq!(model.contributions(&[0.5, 2.0]), vec![0.0, 6.0]);
    }
}
