//! A bagged forest of linfa-trees decision trees, kept in a compact form of our own.
//!
//! linfa-trees learns each tree's splits (Gini on class labels). A linfa tree only knows the
//! modal class of a leaf, so after fitting we route the tree's own training sample through it
//! and store, per node, the mean target of the rows that reach it: the positive share for a
//! classifier (what sklearn's `predict_proba` reports), the mean remaining life for a
//! regression on binned labels. Those node values give averaged probabilities and exact
//! per-feature path contributions (prediction = bias + Σ contributions), which is how a forest
//! score explains itself. Class imbalance: each tree sees a balanced bootstrap (as many rows of
//! every class), as in Chen, Liaw and Breiman's balanced random forest; probabilities are then
//! recalibrated on validation data by the trainer.
//!
//! Reproducibility: rows and features are drawn from a seeded generator, but linfa-trees sums
//! class weights and picks modal classes in `HashMap` order, which differs per process, so
//! near-ties between splits can resolve differently from run to run (the C-MAPSS remaining
//! life RMSE moves by a few hundredths).

use aftercare_learners::TreeNode;
use ndarray::{Array1, Array2, ArrayView2};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Sampling {
    /// Per tree, the same number of rows (with replacement) from every class: the size of the
    /// smallest class, capped at `per_class`.
    Balanced { per_class: usize },
    /// Per tree, `fraction` of the rows drawn with replacement.
    Bootstrap { fraction: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForestParams {
    pub trees: usize,
    pub max_depth: usize,
    /// Minimum rows in a leaf.
    pub min_leaf: f32,
    /// Share of the features each tree may split on (drawn per tree).
    pub feature_fraction: f64,
    pub sampling: Sampling,
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            trees: 60,
            max_depth: 8,
            min_leaf: 5.0,
            feature_fraction: 0.5,
            sampling: Sampling::Balanced { per_class: 4000 },
            seed: 7,
        }
    }
}

const LEAF: u32 = u32::MAX;

/// One node: split feature (`LEAF` for leaves), threshold (go left when value < threshold),
/// children, and the mean target of the training rows that reached it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node(pub u32, pub f64, pub u32, pub u32, pub f64);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    pub trees: Vec<Tree>,
}

#[derive(Debug, thiserror::Error)]
pub enum ForestError {
    #[error("cannot fit a forest: {0}")]
    Input(&'static str),
    #[error("decision tree: {0}")]
    Linfa(#[from] aftercare_learners::LinfaError),
}

impl Forest {
    /// Fits on rows of `x` with class labels (used for the splits) and numeric targets (the
    /// node values; for a classifier, 1.0 for the positive class and 0.0 otherwise).
    pub fn fit(
        x: ArrayView2<f64>,
        classes: &[usize],
        targets: &[f64],
        params: &ForestParams,
    ) -> Result<Forest, ForestError> {
        let (n, p) = x.dim();
        if n == 0 || p == 0 || classes.len() != n || targets.len() != n {
            return Err(ForestError::Input(
                "no rows, no features, or mismatched labels",
            ));
        }
        // linfa-trees sorts with a partial order and panics on NaN: impute before fitting.
        if x.iter().any(|v| !v.is_finite()) {
            return Err(ForestError::Input(
                "missing (non-finite) values: impute them first",
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let mut by_class: Vec<Vec<usize>> = Vec::new();
        for (i, &c) in classes.iter().enumerate() {
            if by_class.len() <= c {
                by_class.resize(c + 1, Vec::new());
            }
            by_class[c].push(i);
        }
        by_class.retain(|rows| !rows.is_empty());
        let k = ((p as f64 * params.feature_fraction).ceil() as usize).clamp(1, p);
        let mut all_features: Vec<usize> = (0..p).collect();
        let mut trees = Vec::with_capacity(params.trees);
        for _ in 0..params.trees {
            let rows = sample_rows(&by_class, n, params.sampling, &mut rng);
            all_features.shuffle(&mut rng);
            let mut features = all_features[..k].to_vec();
            features.sort_unstable();
            let records =
                Array2::from_shape_fn((rows.len(), k), |(r, f)| x[(rows[r], features[f])]);
            let labels: Array1<usize> = rows.iter().map(|&r| classes[r]).collect();
            let fitted =
                aftercare_learners::tree(records, labels, params.max_depth, params.min_leaf)?;
            let mut tree = Tree { nodes: Vec::new() };
            convert(fitted.root_node(), &features, &mut tree.nodes);
            tree.fill_values(x, &rows, targets);
            trees.push(tree);
        }
        Ok(Forest { trees })
    }

    /// Mean of the trees' leaf values.
    pub fn predict(&self, x: &[f64]) -> f64 {
        if self.trees.is_empty() {
            return f64::NAN;
        }
        let sum: f64 = self.trees.iter().map(|t| t.nodes[t.leaf(x)].4).sum();
        sum / self.trees.len() as f64
    }

    /// Per-feature path contributions added into `out` (length: the feature count); returns
    /// the bias (mean root value). `bias + Σ out` equals `predict(x)`.
    pub fn contributions(&self, x: &[f64], out: &mut [f64]) -> f64 {
        let t = self.trees.len().max(1) as f64;
        let mut bias = 0.0;
        for tree in &self.trees {
            let mut i = 0usize;
            bias += tree.nodes[0].4 / t;
            loop {
                let Node(f, threshold, left, right, value) = tree.nodes[i];
                if f == LEAF {
                    break;
                }
                let next = if x[f as usize] < threshold {
                    left
                } else {
                    right
                } as usize;
                if let Some(slot) = out.get_mut(f as usize) {
                    *slot += (tree.nodes[next].4 - value) / t;
                }
                i = next;
            }
        }
        bias
    }

    /// How many splits use each feature (a cheap importance for the model card).
    pub fn split_counts(&self, features: usize) -> Vec<usize> {
        let mut counts = vec![0; features];
        for node in self.trees.iter().flat_map(|t| &t.nodes) {
            if let Some(c) = counts.get_mut(node.0 as usize) {
                *c += 1;
            }
        }
        counts
    }
}

impl Tree {
    fn leaf(&self, x: &[f64]) -> usize {
        let mut i = 0usize;
        loop {
            let Node(f, threshold, left, right, _) = self.nodes[i];
            if f == LEAF {
                return i;
            }
            i = if x[f as usize] < threshold {
                left
            } else {
                right
            } as usize;
        }
    }

    /// Node values: the mean target of the sampled rows reaching each node; a node no row
    /// reaches (possible only through float ties at a threshold) takes its parent's value.
    fn fill_values(&mut self, x: ArrayView2<f64>, rows: &[usize], targets: &[f64]) {
        let mut sum = vec![0.0; self.nodes.len()];
        let mut count = vec![0usize; self.nodes.len()];
        let mut row = vec![0.0; x.ncols()];
        for &r in rows {
            row.iter_mut().zip(x.row(r)).for_each(|(d, s)| *d = *s);
            let mut i = 0usize;
            loop {
                sum[i] += targets[r];
                count[i] += 1;
                let Node(f, threshold, left, right, _) = self.nodes[i];
                if f == LEAF {
                    break;
                }
                i = if row[f as usize] < threshold {
                    left
                } else {
                    right
                } as usize;
            }
        }
        // Parents precede children in `nodes`, so one forward pass can inherit.
        let mut parent_value = vec![f64::NAN; self.nodes.len()];
        for i in 0..self.nodes.len() {
            let value = if count[i] > 0 {
                sum[i] / count[i] as f64
            } else {
                parent_value[i]
            };
            self.nodes[i].4 = value;
            let Node(f, _, left, right, _) = self.nodes[i];
            if f != LEAF {
                parent_value[left as usize] = value;
                parent_value[right as usize] = value;
            }
        }
    }
}

fn sample_rows(
    by_class: &[Vec<usize>],
    n: usize,
    sampling: Sampling,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    match sampling {
        Sampling::Balanced { per_class } => {
            let m = by_class
                .iter()
                .map(Vec::len)
                .min()
                .unwrap_or(0)
                .min(per_class)
                .max(1);
            by_class
                .iter()
                .flat_map(|rows| {
                    (0..m)
                        .map(|_| rows[rng.gen_range(0..rows.len())])
                        .collect::<Vec<_>>()
                })
                .collect()
        }
        Sampling::Bootstrap { fraction } => {
            let m = ((n as f64 * fraction).ceil() as usize).clamp(1, n);
            (0..m).map(|_| rng.gen_range(0..n)).collect()
        }
    }
}

/// Appends `node` and its subtree in pre-order (parents before children), mapping the tree's
/// local feature indices to the forest's.
fn convert(node: &TreeNode<f64, usize>, features: &[usize], out: &mut Vec<Node>) -> u32 {
    let index = out.len();
    out.push(Node(LEAF, 0.0, 0, 0, f64::NAN));
    let children = node.children();
    if let (false, [Some(left), Some(right)]) = (node.is_leaf(), children.as_slice()) {
        let (f, threshold, _) = node.split();
        let l = convert(left, features, out);
        let r = convert(right, features, out);
        out[index] = Node(features[f] as u32, threshold, l, r, f64::NAN);
    }
    index as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// y = 1 when x0 > 0.5 (x1 is noise): the forest separates the classes, its values are
    /// probabilities, and the contributions add up to the prediction and name x0.
    #[test]
    fn learns_a_threshold_and_explains_it() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = 600;
        let x = Array2::from_shape_fn((n, 2), |_| rng.gen::<f64>());
        // Imbalanced: about one positive in ten.
        let classes: Vec<usize> = (0..n).map(|i| usize::from(x[(i, 0)] > 0.9)).collect();
        let targets: Vec<f64> = classes.iter().map(|&c| c as f64).collect();
        let params = ForestParams {
            trees: 20,
            feature_fraction: 1.0,
            ..ForestParams::default()
        };
        let forest = Forest::fit(x.view(), &classes, &targets, &params).unwrap();
        let high = forest.predict(&[0.97, 0.5]);
        let low = forest.predict(&[0.2, 0.5]);
        assert!(high > 0.9 && low < 0.1, "high {high} low {low}");
        let mut contrib = [0.0; 2];
        let bias = forest.contributions(&[0.97, 0.5], &mut contrib);
        assert!((bias + contrib.iter().sum::<f64>() - high).abs() < 1e-9);
        assert!(
            contrib[0] > 0.3 && contrib[0] > contrib[1].abs() * 5.0,
            "{contrib:?}"
        );
        // Deterministic for a seed.
        let again = Forest::fit(x.view(), &classes, &targets, &params).unwrap();
        assert_eq!(forest, again);
    }
}
