//! Evaluation metrics, written out here so their definitions are explicit and tested against
//! known values: ROC-AUC (Mann-Whitney, ties counted half), PR-AUC as average precision (the
//! step-wise sum sklearn uses), Brier score, reliability bins with expected calibration error,
//! precision at k, confusion counts at a threshold, lead times, RMSE.

use serde::{Deserialize, Serialize};

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half. `None` when either class is absent.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let order = order_desc(scores);
    let (pos, neg) = class_counts(labels);
    if pos == 0 || neg == 0 {
        return None;
    }
    // Walk from the highest score; each tie group contributes its pairs with the negatives
    // seen so far (strictly above) plus half the pairs inside the group.
    let (mut neg_above, mut wins) = (0.0f64, 0.0f64);
    for group in tie_groups(&order, scores) {
        let p = group.iter().filter(|&&i| labels[i]).count() as f64;
        let n = group.len() as f64 - p;
        wins += p * (neg as f64 - neg_above - n) + 0.5 * p * n;
        neg_above += n;
    }
    Some(wins / (pos as f64 * neg as f64))
}

/// Average precision: sum over thresholds of (recall gain) × precision at that threshold.
/// Tied scores form one threshold. `None` without positives.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let (pos, _) = class_counts(labels);
    if pos == 0 {
        return None;
    }
    let order = order_desc(scores);
    let (mut tp, mut seen, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    for group in tie_groups(&order, scores) {
        tp += group.iter().filter(|&&i| labels[i]).count();
        seen += group.len();
        let recall = tp as f64 / pos as f64;
        ap += (recall - last_recall) * tp as f64 / seen as f64;
        last_recall = recall;
    }
    Some(ap)
}

/// Average precision with a weight per row (a row drawn twice counts twice), over rows
/// already in `order` (by `order_desc`) and cut into tie groups by `groups` (end indices).
fn weighted_average_precision(
    order: &[usize],
    groups: &[usize],
    labels: &[bool],
    weight: impl Fn(usize) -> f64,
) -> Option<f64> {
    let positives: f64 = order
        .iter()
        .filter(|&&i| labels[i])
        .map(|&i| weight(i))
        .sum();
    if positives <= 0.0 {
        return None;
    }
    let (mut tp, mut seen, mut ap, mut last_recall, mut start) = (0.0, 0.0, 0.0, 0.0, 0);
    for &end in groups {
        for &i in &order[start..end] {
            let w = weight(i);
            seen += w;
            if labels[i] {
                tp += w;
            }
        }
        start = end;
        if seen > 0.0 {
            let recall = tp / positives;
            ap += (recall - last_recall) * tp / seen;
            last_recall = recall;
        }
    }
    Some(ap)
}

/// A percentile interval of the difference in average precision between two scorings `a`
/// and `b` of the same rows, by a bootstrap over `clusters` (vehicles): each replicate draws
/// as many clusters as there are, with replacement, and takes their rows whole, because one
/// vehicle's daily snapshots are not independent. Returns the (`(1 − level)/2`,
/// `(1 + level)/2`) quantiles of AP(a) − AP(b), or `None` without positives. Seeded, so the
/// same inputs give the same interval.
pub fn average_precision_difference_interval(
    a: &[f64],
    b: &[f64],
    labels: &[bool],
    clusters: &[u32],
    replicates: usize,
    level: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    use rand::{Rng, SeedableRng};
    let (pos, _) = class_counts(labels);
    if pos == 0 || replicates == 0 {
        return None;
    }
    let mut index: std::collections::HashMap<u32, usize> = Default::default();
    let dense: Vec<usize> = clusters
        .iter()
        .map(|c| {
            let n = index.len();
            *index.entry(*c).or_insert(n)
        })
        .collect();
    let n_clusters = index.len();
    let (order_a, groups_a) = order_with_tie_ends(a);
    let (order_b, groups_b) = order_with_tie_ends(b);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut draws = vec![0.0f64; n_clusters];
    let mut diffs = Vec::with_capacity(replicates);
    for _ in 0..replicates {
        draws.iter_mut().for_each(|d| *d = 0.0);
        for _ in 0..n_clusters {
            draws[rng.gen_range(0..n_clusters)] += 1.0;
        }
        let weight = |i: usize| draws[dense[i]];
        // A replicate without positives says nothing about ranking them: left out.
        if let (Some(x), Some(y)) = (
            weighted_average_precision(&order_a, &groups_a, labels, weight),
            weighted_average_precision(&order_b, &groups_b, labels, weight),
        ) {
            diffs.push(x - y);
        }
    }
    if diffs.is_empty() {
        return None;
    }
    diffs.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        let i = (q * (diffs.len() - 1) as f64).round() as usize;
        diffs[i.min(diffs.len() - 1)]
    };
    Some((quantile((1.0 - level) / 2.0), quantile((1.0 + level) / 2.0)))
}

/// Mean squared error of probabilities against outcomes.
pub fn brier(probs: &[f64], labels: &[bool]) -> Option<f64> {
    if probs.is_empty() {
        return None;
    }
    let sum: f64 = probs
        .iter()
        .zip(labels)
        .map(|(p, &y)| (p - if y { 1.0 } else { 0.0 }).powi(2))
        .sum();
    Some(sum / probs.len() as f64)
}

/// One reliability bin: predictions in [lo, hi), their mean and the observed rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
    pub mean_predicted: f64,
    pub observed: f64,
}

/// Equal-width reliability bins over [0, 1] (empty bins omitted) and the expected calibration
/// error: the count-weighted mean of |mean predicted − observed|.
pub fn calibration(probs: &[f64], labels: &[bool], bins: usize) -> (Vec<CalibrationBin>, f64) {
    let bins = bins.max(1);
    let mut acc = vec![(0usize, 0.0f64, 0usize); bins];
    for (&p, &y) in probs.iter().zip(labels) {
        let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        acc[b].0 += 1;
        acc[b].1 += p;
        acc[b].2 += usize::from(y);
    }
    let total = probs.len().max(1) as f64;
    let mut ece = 0.0;
    let out = acc
        .iter()
        .enumerate()
        .filter(|(_, (n, ..))| *n > 0)
        .map(|(b, &(n, sum_p, pos))| {
            let bin = CalibrationBin {
                lo: b as f64 / bins as f64,
                hi: (b + 1) as f64 / bins as f64,
                n,
                mean_predicted: sum_p / n as f64,
                observed: pos as f64 / n as f64,
            };
            ece += n as f64 / total * (bin.mean_predicted - bin.observed).abs();
            bin
        })
        .collect();
    (out, ece)
}

/// Share of positives among the `k` highest scores (ties broken by position, so the result
/// is deterministic). `None` when k is zero or there is nothing to rank.
pub fn precision_at_k(scores: &[f64], labels: &[bool], k: usize) -> Option<f64> {
    let k = k.min(scores.len());
    if k == 0 {
        return None;
    }
    let order = order_desc(scores);
    Some(order[..k].iter().filter(|&&i| labels[i]).count() as f64 / k as f64)
}

/// Confusion counts of the rule "alert when score ≥ threshold".
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Confusion {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    pub tn: usize,
}

impl Confusion {
    pub fn at(scores: &[f64], labels: &[bool], threshold: f64) -> Confusion {
        let mut c = Confusion::default();
        for (&s, &y) in scores.iter().zip(labels) {
            match (s >= threshold, y) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        c
    }

    pub fn alerts(&self) -> usize {
        self.tp + self.fp
    }

    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The threshold (one of the scores) with the highest F1, and that F1. Ties go to the higher
/// threshold (fewer alerts). `None` without positives.
pub fn best_f1_threshold(scores: &[f64], labels: &[bool]) -> Option<(f64, f64)> {
    let (pos, _) = class_counts(labels);
    if pos == 0 {
        return None;
    }
    let order = order_desc(scores);
    let (mut tp, mut seen) = (0usize, 0usize);
    let mut best: Option<(f64, f64)> = None;
    for group in tie_groups(&order, scores) {
        tp += group.iter().filter(|&&i| labels[i]).count();
        seen += group.len();
        let f1 = 2.0 * tp as f64 / (seen + pos) as f64;
        if best.is_none_or(|(_, b)| f1 > b) {
            best = Some((scores[group[0]], f1));
        }
    }
    best
}

/// The threshold that makes exactly the `count` highest scores alerts (fewer when the score
/// at the cut is tied with the next one). +∞ when count is zero.
pub fn threshold_for_volume(scores: &[f64], count: usize) -> f64 {
    if count == 0 || scores.is_empty() {
        return f64::INFINITY;
    }
    let order = order_desc(scores);
    let k = count.min(scores.len());
    let cut = scores[order[k - 1]];
    if k < scores.len() && scores[order[k]] == cut {
        // Including the tie would exceed the volume: cut just above it.
        next_up(cut)
    } else {
        cut
    }
}

fn next_up(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    let bits = x.to_bits();
    let next = if x == 0.0 {
        1
    } else if x > 0.0 {
        bits + 1
    } else {
        bits - 1
    };
    f64::from_bits(next)
}

/// Lead times of failure episodes: days from the first alert to the failure, `None` where no
/// alert came before it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LeadSummary {
    pub failures: usize,
    pub caught: usize,
    /// Share of failures whose first alert came at least `min_days` ahead.
    pub caught_ahead_share: f64,
    pub min_days: f64,
    /// Median lead of the caught failures, in days.
    pub median_lead_days: Option<f64>,
}

pub fn lead_summary(leads: &[Option<f64>], min_days: f64) -> LeadSummary {
    let mut caught: Vec<f64> = leads.iter().flatten().copied().collect();
    caught.sort_by(f64::total_cmp);
    let ahead = caught.iter().filter(|&&d| d >= min_days).count();
    LeadSummary {
        failures: leads.len(),
        caught: caught.len(),
        caught_ahead_share: ratio(ahead, leads.len()),
        min_days,
        median_lead_days: median_sorted(&caught),
    }
}

pub fn median_sorted(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

pub fn rmse(predicted: &[f64], actual: &[f64]) -> f64 {
    let n = predicted.len().min(actual.len());
    if n == 0 {
        return f64::NAN;
    }
    let sum: f64 = predicted
        .iter()
        .zip(actual)
        .map(|(p, a)| (p - a).powi(2))
        .sum();
    (sum / n as f64).sqrt()
}

fn class_counts(labels: &[bool]) -> (usize, usize) {
    let pos = labels.iter().filter(|&&y| y).count();
    (pos, labels.len() - pos)
}

/// Indices by descending score, stable (earlier index first among ties); NaN ranks last.
fn order_desc(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (scores[a], scores[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.total_cmp(&x),
        }
    });
    order
}

/// `order_desc` of `scores` and the end index (into it) of each tie group, so a pass over
/// weighted rows needs no comparisons.
fn order_with_tie_ends(scores: &[f64]) -> (Vec<usize>, Vec<usize>) {
    let order = order_desc(scores);
    let mut ends = Vec::new();
    let mut at = 0;
    for group in tie_groups(&order, scores) {
        at += group.len();
        ends.push(at);
    }
    (order, ends)
}

fn tie_groups<'a>(order: &'a [usize], scores: &'a [f64]) -> impl Iterator<Item = &'a [usize]> {
    order.chunk_by(move |&a, &b| {
        scores[a] == scores[b] || (scores[a].is_nan() && scores[b].is_nan())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn weighted_average_precision_with_unit_weights_is_average_precision() {
        let scores = [0.9, 0.8, 0.8, 0.4, 0.3, 0.3, 0.1];
        let labels = [true, false, true, false, true, false, false];
        let (order, ends) = order_with_tie_ends(&scores);
        let plain = average_precision(&scores, &labels).unwrap();
        close(
            weighted_average_precision(&order, &ends, &labels, |_| 1.0).unwrap(),
            plain,
        );
        // Doubling every row changes nothing; dropping the first positive's row does.
        close(
            weighted_average_precision(&order, &ends, &labels, |_| 2.0).unwrap(),
            plain,
        );
        let without_first: Vec<usize> = (1..scores.len()).collect();
        close(
            weighted_average_precision(&order, &ends, &labels, |i| f64::from(u8::from(i != 0)))
                .unwrap(),
            average_precision(
                &without_first.iter().map(|&i| scores[i]).collect::<Vec<_>>(),
                &without_first.iter().map(|&i| labels[i]).collect::<Vec<_>>(),
            )
            .unwrap(),
        );
    }

    #[test]
    fn the_bootstrap_interval_brackets_the_difference_and_narrows_with_data() {
        // Scorer a ranks every positive first; b ranks them at random. 40 clusters of 25
        // rows, then 400 clusters: the interval lies above zero, contains the observed
        // difference and is narrower with more clusters.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let make = |clusters: u32, rng: &mut rand_chacha::ChaCha8Rng| {
            let (mut a, mut b, mut y, mut c) = (vec![], vec![], vec![], vec![]);
            for cluster in 0..clusters {
                for _ in 0..25 {
                    let positive = rng.gen_bool(0.05);
                    let noise: f64 = rng.gen();
                    a.push(if positive { 1.0 + noise } else { noise });
                    b.push(rng.gen());
                    y.push(positive);
                    c.push(cluster);
                }
            }
            (a, b, y, c)
        };
        let mut widths = Vec::new();
        for clusters in [40, 400] {
            let (a, b, y, c) = make(clusters, &mut rng);
            let observed = average_precision(&a, &y).unwrap() - average_precision(&b, &y).unwrap();
            let (lo, hi) =
                average_precision_difference_interval(&a, &b, &y, &c, 200, 0.9, 7).unwrap();
            assert!(
                lo > 0.0 && lo <= observed && observed <= hi,
                "{lo} {observed} {hi}"
            );
            // Same seed, same interval.
            assert_eq!(
                average_precision_difference_interval(&a, &b, &y, &c, 200, 0.9, 7),
                Some((lo, hi))
            );
            widths.push(hi - lo);
        }
        assert!(widths[1] < widths[0], "{widths:?}");
        assert_eq!(
            average_precision_difference_interval(&[0.1], &[0.2], &[false], &[1], 10, 0.9, 1),
            None
        );
    }

    // The worked example of sklearn's roc_auc_score / average_precision_score docs:
    // y = [0, 0, 1, 1], scores = [0.1, 0.4, 0.35, 0.8] → ROC-AUC 0.75, AP 0.8333.
    #[test]
    fn roc_auc_and_average_precision_match_known_values() {
        let s = [0.1, 0.4, 0.35, 0.8];
        let y = [false, false, true, true];
        close(roc_auc(&s, &y).unwrap(), 0.75);
        close(
            average_precision(&s, &y).unwrap(),
            0.5 * 1.0 + 0.5 * (2.0 / 3.0),
        );
        // Perfect and inverted rankings.
        close(
            roc_auc(&[0.9, 0.8, 0.1], &[true, true, false]).unwrap(),
            1.0,
        );
        close(
            roc_auc(&[0.1, 0.2, 0.9], &[true, true, false]).unwrap(),
            0.0,
        );
        close(
            average_precision(&[0.9, 0.8, 0.1], &[true, true, false]).unwrap(),
            1.0,
        );
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(average_precision(&[0.1, 0.2], &[false, false]), None);
    }

    #[test]
    fn ties_count_half_and_form_one_threshold() {
        // All tied: a coin flip, and AP equals the prevalence.
        let y = [true, false, false, true, false];
        let s = [0.5; 5];
        close(roc_auc(&s, &y).unwrap(), 0.5);
        close(average_precision(&s, &y).unwrap(), 0.4);
        // One positive tied with one negative on top, one negative below: pairs
        // (pos vs tied neg) = 0.5, (pos vs lower neg) = 1 → 0.75.
        close(
            roc_auc(&[0.9, 0.9, 0.1], &[true, false, false]).unwrap(),
            0.75,
        );
        // AP: the tie group gives recall 1 at precision 1/2.
        close(
            average_precision(&[0.9, 0.9, 0.1], &[true, false, false]).unwrap(),
            0.5,
        );
    }

    // sklearn brier_score_loss example: y = [0, 1, 1, 0], p = [0.1, 0.9, 0.8, 0.3] → 0.0375.
    #[test]
    fn brier_matches_known_value() {
        close(
            brier(&[0.1, 0.9, 0.8, 0.3], &[false, true, true, false]).unwrap(),
            0.0375,
        );
        assert_eq!(brier(&[], &[]), None);
    }

    #[test]
    fn calibration_bins_and_ece() {
        // Bin [0, 0.5): p 0.2 and 0.3, one positive → mean 0.25, observed 0.5.
        // Bin [0.5, 1]: p 0.8, 0.9 and 1.0, all positive → mean 0.9, observed 1.
        let p = [0.2, 0.3, 0.8, 0.9, 1.0];
        let y = [true, false, true, true, true];
        let (bins, ece) = calibration(&p, &y, 2);
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[0].n, 2);
        close(bins[0].mean_predicted, 0.25);
        close(bins[0].observed, 0.5);
        assert_eq!(bins[1].n, 3);
        close(bins[1].mean_predicted, 0.9);
        close(ece, 0.4 * 0.25 + 0.6 * 0.1);
    }

    #[test]
    fn precision_at_k_and_confusion() {
        let s = [0.9, 0.8, 0.7, 0.1];
        let y = [true, false, true, false];
        close(precision_at_k(&s, &y, 1).unwrap(), 1.0);
        close(precision_at_k(&s, &y, 2).unwrap(), 0.5);
        close(precision_at_k(&s, &y, 3).unwrap(), 2.0 / 3.0);
        close(precision_at_k(&s, &y, 10).unwrap(), 0.5);
        assert_eq!(precision_at_k(&s, &y, 0), None);
        let c = Confusion::at(&s, &y, 0.75);
        assert_eq!(
            c,
            Confusion {
                tp: 1,
                fp: 1,
                fn_: 1,
                tn: 1
            }
        );
        close(c.precision(), 0.5);
        close(c.recall(), 0.5);
        close(c.f1(), 0.5);
    }

    #[test]
    fn thresholds_by_f1_and_by_volume() {
        let s = [0.9, 0.8, 0.7, 0.1];
        let y = [true, false, true, false];
        // Cut at 0.9: F1 = 2/3; at 0.8: 1/2; at 0.7: 4/5; at 0.1: 2/3.
        let (t, f1) = best_f1_threshold(&s, &y).unwrap();
        close(t, 0.7);
        close(f1, 0.8);
        assert_eq!(threshold_for_volume(&s, 2), 0.8);
        assert_eq!(
            Confusion::at(&s, &y, threshold_for_volume(&s, 3)).alerts(),
            3
        );
        // A tie at the cut would exceed the volume, so the cut moves above it.
        let tied = [0.9, 0.5, 0.5, 0.1];
        let t = threshold_for_volume(&tied, 2);
        assert_eq!(Confusion::at(&tied, &y, t).alerts(), 1);
        assert_eq!(threshold_for_volume(&s, 0), f64::INFINITY);
    }

    #[test]
    fn lead_times() {
        let leads = [Some(10.0), Some(3.0), None, Some(30.0)];
        let l = lead_summary(&leads, 7.0);
        assert_eq!((l.failures, l.caught), (4, 3));
        close(l.caught_ahead_share, 0.5);
        assert_eq!(l.median_lead_days, Some(10.0));
        assert_eq!(median_sorted(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
        assert_eq!(lead_summary(&[], 7.0).median_lead_days, None);
    }

    #[test]
    fn rmse_of_known_errors() {
        close(
            rmse(&[1.0, 2.0, 3.0], &[1.0, 4.0, 1.0]),
            (8.0f64 / 3.0).sqrt(),
        );
    }
}
