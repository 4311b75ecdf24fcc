//! Scoring a vehicle with a loaded artifact: per component it has, the probabilities for 7,
//! 30 and 90 days (made monotone: risk within 7 days cannot exceed risk within 30), the
//! urgency derived from them, and the top factors of the 30-day model in an advisor's words.

use super::artifact::{Artifact, ArtifactError, SCORED_HORIZONS};
use super::explain;
use super::feature_list;
use super::features::{self, Snapshot};
use crate::component::Component;
use crate::risk::Factor;
use crate::vehicle::{has_component, History};
use chrono::{DateTime, Utc};

pub const TOP_FACTORS: usize = 3;
/// Urgency beyond this is reported as this (a year out is "not urgent" to an advisor).
pub const MAX_URGENCY_DAYS: f64 = 365.0;

struct Resolved {
    component: Component,
    /// Index into `artifact.components`.
    model: usize,
    /// Global feature indices of the model's features.
    columns: Vec<usize>,
    /// Index into the component's horizons for 7, 30 and 90 days.
    horizons: [usize; 3],
}

pub struct Scorer {
    pub artifact: Artifact,
    resolved: Vec<Resolved>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ComponentScore {
    pub component: Component,
    /// Probabilities for 7, 30 and 90 days.
    pub p: [f64; 3],
    /// Likely days to failure; `None` when no horizon is at or above its alert threshold.
    pub urgency_days: Option<f64>,
    pub factors: Vec<Factor>,
}

impl Scorer {
    pub fn new(artifact: Artifact) -> Result<Scorer, ArtifactError> {
        let invalid = |reason: String| ArtifactError::Invalid {
            path: artifact.version.clone(),
            reason,
        };
        let mut resolved = Vec::new();
        for (m, cm) in artifact.components.iter().enumerate() {
            let columns = cm
                .features
                .iter()
                .map(|f| {
                    feature_list::index_of(f)
                        .ok_or_else(|| invalid(format!("unknown feature {f:?}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut horizons = [0usize; 3];
            for (slot, days) in horizons.iter_mut().zip(SCORED_HORIZONS) {
                *slot = cm
                    .horizons
                    .iter()
                    .position(|h| h.days == days)
                    .ok_or_else(|| {
                        invalid(format!(
                            "{} has no {days}-day model; scoring needs 7, 30 and 90 days",
                            cm.component
                        ))
                    })?;
            }
            resolved.push(Resolved {
                component: cm.component,
                model: m,
                columns,
                horizons,
            });
        }
        Ok(Scorer { artifact, resolved })
    }

    pub fn version(&self) -> &str {
        &self.artifact.version
    }

    pub fn score(&self, history: &History, as_of: DateTime<Utc>) -> Vec<ComponentScore> {
        self.score_snapshot(&features::compute(history, as_of))
    }

    /// Probabilities (7, 30, 90 days) of every component the vehicle has, without
    /// explanations (evaluation).
    pub fn probabilities(&self, snapshot: &Snapshot) -> Vec<(Component, [f64; 3])> {
        let mut row = Vec::new();
        self.resolved
            .iter()
            .filter(|r| has_component(snapshot.powertrain, r.component))
            .map(|r| {
                (
                    r.component,
                    self.horizon_probabilities(r, snapshot, &mut row),
                )
            })
            .collect()
    }

    pub fn score_snapshot(&self, snapshot: &Snapshot) -> Vec<ComponentScore> {
        let mut row = Vec::new();
        self.resolved
            .iter()
            .filter(|r| has_component(snapshot.powertrain, r.component))
            .map(|r| {
                let p = self.horizon_probabilities(r, snapshot, &mut row);
                let cm = &self.artifact.components[r.model];
                let at_risk = r
                    .horizons
                    .iter()
                    .zip(p)
                    .any(|(&i, p)| p >= cm.horizons[i].model.threshold);
                let contributions = cm.horizons[r.horizons[1]].model.contributions(&row);
                ComponentScore {
                    component: r.component,
                    p,
                    urgency_days: at_risk.then(|| urgency_days(p)),
                    factors: explain::top_factors(
                        r.component,
                        &r.columns,
                        &contributions,
                        snapshot,
                        TOP_FACTORS,
                    ),
                }
            })
            .collect()
    }

    /// Fills `row` with the component model's features and returns its probabilities for
    /// 7, 30 and 90 days, made monotone (risk within 7 days cannot exceed risk within 30).
    fn horizon_probabilities(
        &self,
        r: &Resolved,
        snapshot: &Snapshot,
        row: &mut Vec<f64>,
    ) -> [f64; 3] {
        row.clear();
        row.extend(r.columns.iter().map(|&g| snapshot.values[g]));
        let cm = &self.artifact.components[r.model];
        let mut p = r.horizons.map(|i| cm.horizons[i].model.probability(row));
        p[1] = p[1].max(p[0]);
        p[2] = p[2].max(p[1]);
        p
    }
}

/// Likely days to failure: the median of a time-to-failure distribution whose CDF passes
/// through (0, 0), (7, p7), (30, p30), (90, p90), linear in between and with the hazard of the
/// 30–90 day stretch after 90 days; capped at `MAX_URGENCY_DAYS`.
pub fn urgency_days(p: [f64; 3]) -> f64 {
    let points = [
        (0.0, 0.0),
        (7.0, p[0]),
        (30.0, p[1].max(p[0])),
        (90.0, p[2].max(p[1]).max(p[0])),
    ];
    for w in points.windows(2) {
        let ((t0, f0), (t1, f1)) = (w[0], w[1]);
        if f1 >= 0.5 && f1 > f0 {
            return t0 + (0.5 - f0) / (f1 - f0) * (t1 - t0);
        }
    }
    let (f30, f90) = (points[2].1.min(0.999_999), points[3].1.min(0.999_999));
    // Constant hazard fitted to the 30–90 day survival, or to 0–90 when flat there.
    let hazard = if f90 > f30 {
        ((1.0 - f30) / (1.0 - f90)).ln() / 60.0
    } else {
        -(1.0 - f90).ln() / 90.0
    };
    if hazard <= 0.0 || !hazard.is_finite() {
        return MAX_URGENCY_DAYS;
    }
    (90.0 + ((1.0 - f90) / 0.5).ln() / hazard).min(MAX_URGENCY_DAYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgency_from_horizon_probabilities() {
        // Half the risk is reached between 7 and 30 days: 7 + (0.5 - 0.2) / 0.6 * 23 = 18.5.
        assert!((urgency_days([0.2, 0.8, 0.9]) - 18.5).abs() < 1e-9);
        // Already likely within a week.
        assert!((urgency_days([0.7, 0.9, 0.95]) - 5.0).abs() < 1e-9);
        // Below one half at 90 days: extrapolated beyond 90 with the 30–90 day hazard.
        let u = urgency_days([0.05, 0.2, 0.4]);
        assert!(u > 90.0 && u < 200.0, "{u}");
        // Higher risk is more urgent.
        assert!(urgency_days([0.05, 0.3, 0.45]) < u);
        assert_eq!(urgency_days([0.0, 0.0, 0.0]), MAX_URGENCY_DAYS);
        // Non-monotone input is made monotone first.
        assert!((urgency_days([0.6, 0.4, 0.9]) - 7.0 * 0.5 / 0.6).abs() < 1e-9);
    }
}
