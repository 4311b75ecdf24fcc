//! What a risk score says and why, as every part of the service sees it: the model explains
//! its scores with factors (`model::explain`), storage keeps them with each score and offer,
//! and the API shows them. Here, below all of those, so none has to reach into another.

use serde::{Deserialize, Serialize};

/// One reason, as stored in `risk_scores.factors`: a top contributing factor in a service
/// advisor's words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Factor {
    /// The model feature that contributed most within this subject.
    pub feature: String,
    pub value: f64,
    /// The subject's summed contribution (log-odds for logistic models, probability points
    /// for forests).
    pub contribution: f64,
    pub text: String,
}
