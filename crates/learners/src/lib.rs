//! Concrete (non-generic) entry points into linfa's training code.
//!
//! linfa's learners are generic, so their code is compiled in the crate that instantiates
//! them. Instantiated in the service crate, they ran 20 to 50 times slower in development
//! builds and tests (the service crate is not optimised there; C-MAPSS training took minutes).
//! Instantiated here, they are built optimised by a profile override in the root
//! `Cargo.toml`, while the service crate keeps its quick unoptimised development builds.

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};

pub use linfa::Error as LinfaError;
pub use linfa_logistic::error::Error as LogisticError;
pub use linfa_trees::{DecisionTree, TreeNode};

/// L2-penalised logistic regression of `y` on `x` (linfa-logistic, L-BFGS). Returns the
/// coefficients and intercept of log-odds of `true`.
pub fn logistic(
    x: Array2<f64>,
    y: Array1<bool>,
    alpha: f64,
    max_iterations: u64,
) -> Result<(Vec<f64>, f64), LogisticError> {
    let fitted = LogisticRegression::default()
        .alpha(alpha)
        .max_iterations(max_iterations)
        .fit(&Dataset::new(x, y))?;
    // linfa reports P(labels().pos.class); make it P(true).
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    Ok((
        fitted.params().iter().map(|c| sign * c).collect(),
        sign * fitted.intercept(),
    ))
}

/// A Gini decision tree on class labels (linfa-trees).
pub fn tree(
    records: Array2<f64>,
    labels: Array1<usize>,
    max_depth: usize,
    min_leaf: f32,
) -> Result<DecisionTree<f64, usize>, LinfaError> {
    DecisionTree::params()
        .max_depth(Some(max_depth))
        .min_weight_leaf(min_leaf)
        .min_weight_split(2.0 * min_leaf)
        .fit(&Dataset::new(records, labels))
}
