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
}

impl Learner {
    pub fn name(&self) -> &'static str {
        match self {
            Learner::Logistic(_) => "logistic",
            Learner::Forest { .. } => "forest",
            Learner::Prior { .. } => "prior",
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
    let base_rate = (positives as f64 + 0.5) / (train.y.len() as f64 + 1.0);
    if positives < cfg.min_positives || negatives == 0 {
        candidates.push((Learner::Prior { p: base_rate }, vec![base_rate; xv.nrows()]));
    } else {
        let logistic = fit_logistic(&prep, xt.view(), train.y, cfg, None)?;
        let scores = predict_rows(&prep, &Learner::Logistic(logistic.clone()), xv.view());
        candidates.push((Learner::Logistic(logistic), scores));
        if let Some(a) = cfg.anchor.filter(|&a| a < xt.ncols()) {
            let anchored = fit_logistic(&prep, xt.view(), train.y, cfg, Some(a))?;
            let scores = predict_rows(&prep, &Learner::Logistic(anchored.clone()), xv.view());
            candidates.push((Learner::Logistic(anchored), scores));
            names.insert(candidates.len() - 1, ANCHORED);
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
    let learner = candidates.swap_remove(chosen).0;
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

/// `only`: fit on that one column (the other coefficients stay zero).
fn fit_logistic(
    prep: &Prep,
    x: ArrayView2<f64>,
    y: &[bool],
    cfg: &TrainConfig,
    only: Option<usize>,
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
        Some(j) => vec![j],
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
    match learner {
        Learner::Logistic(l) => {
            let z: f64 = l
                .coef
                .iter()
                .enumerate()
                .map(|(j, c)| c * prep.z(j, row[j]))
                .sum();
            sigmoid(z + l.intercept)
        }
        Learner::Forest { forest, platt } => platt.apply(forest.predict(&row)),
        Learner::Prior { p } => *p,
    }
}

impl BinaryModel {
    pub fn probability(&self, raw: &[f64]) -> f64 {
        probability(&self.prep, &self.learner, raw)
    }

    /// Per-feature contributions to this row's score: coefficient × standardised value for
    /// the logistic model (log-odds), path contributions for the forest (probability points).
    pub fn contributions(&self, raw: &[f64]) -> Vec<f64> {
        let mut row = raw.to_vec();
        self.prep.impute(&mut row);
        match &self.learner {
            Learner::Logistic(l) => l
                .coef
                .iter()
                .enumerate()
                .map(|(j, c)| c * self.prep.z(j, row[j]))
                .collect(),
            Learner::Forest { forest, .. } => {
                let mut out = vec![0.0; row.len()];
                forest.contributions(&row, &mut out);
                out
            }
            Learner::Prior { .. } => vec![0.0; row.len()],
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
        let (yt, yv) = y.split_at(xt.nrows());
        train_binary(Split { x: xt, y: yt }, Split { x: xv, y: yv }, cfg).unwrap()
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
        let logistic = m
            .validation
            .iter()
            .find(|v| v.learner == "logistic")
            .unwrap();
        assert!(logistic.roc_auc.unwrap() < 0.3, "{logistic:?}");
        assert_eq!(m.validation[0].learner, "prior");
    }

    /// A rare outcome that one domain score predicts, among many noise columns: the
    /// rule-anchored candidate is tried and reported, and it reads its column only.
    #[test]
    fn a_rule_anchored_candidate_is_tried_and_reads_only_its_column() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (n, p) = (30_000, 40);
        let x = Array2::from_shape_fn((n, p), |_| rng.gen::<f64>());
        let y: Vec<bool> = (0..n)
            .map(|i| rng.gen::<f64>() < sigmoid(-12.0 + 8.0 * x[(i, 0)]))
            .collect();
        let half = n / 2;
        let (xt, xv) = x.view().split_at(ndarray::Axis(0), half);
        let cfg = TrainConfig {
            forest: None,
            anchor: Some(0),
            ..TrainConfig::default()
        };
        let m = fit_halves(xt, xv, &y, &cfg);
        let anchored = m
            .validation
            .iter()
            .find(|v| v.learner == ANCHORED)
            .expect("the anchored candidate is reported");
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
}
