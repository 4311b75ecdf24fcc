//! The model artifact: one JSON file per trained model in `models/`, versioned, holding the
//! feature list of each component's model, the training window, a summary of the data, the
//! learned parameters, validation metrics and the chosen alert thresholds; and a model card
//! (markdown) generated beside it. `current.json` / `current.md` are replaced atomically
//! (write, then rename) so a running service never reads half a file.

use super::dataset::{JobCounts, Window};
use super::feature_list;
use super::learn::{BinaryModel, Learner, TrainConfig, Validation};
use crate::component::Component;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub const FORMAT: u32 = 1;
/// The horizons scores are stored for (`risk_scores.p7`, `p30`, `p90`).
pub const SCORED_HORIZONS: [i64; 3] = [7, 30, 90];

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot read model artifact {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("model artifact {path} is not valid: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Training {
    pub window: Window,
    /// Training snapshots end their horizon by this instant; validation snapshots start here.
    pub split_at: DateTime<Utc>,
    pub horizons: Vec<i64>,
    pub config: TrainConfig,
    pub labels: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    pub vehicles: usize,
    pub snapshots: usize,
    pub weeks: f64,
    /// Service jobs in the training window per component.
    pub jobs: BTreeMap<Component, JobCounts>,
}

impl DataSummary {
    /// Repairs and preventive jobs per week for a component: what its workshops take in.
    pub fn weekly_jobs(&self, component: Component) -> f64 {
        self.jobs
            .get(&component)
            .map(|j| (j.repair + j.preventive) as f64 / self.weeks.max(1.0))
            .unwrap_or(0.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HorizonModel {
    pub days: i64,
    pub model: BinaryModel,
    /// The rule baseline on the same validation snapshots (alerting at its own thresholds).
    pub rule_baseline: Option<Validation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentModel {
    pub component: Component,
    pub features: Vec<String>,
    pub horizons: Vec<HorizonModel>,
}

impl ComponentModel {
    /// A component's models, over the features `feature_list::for_component` gives it.
    pub fn new(component: Component, horizons: Vec<HorizonModel>) -> ComponentModel {
        ComponentModel {
            component,
            features: feature_list::for_component(component)
                .into_iter()
                .map(|j| feature_list::all()[j].name.clone())
                .collect(),
            horizons,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub format: u32,
    pub version: String,
    pub created_at: DateTime<Utc>,
    pub training: Training,
    pub data: DataSummary,
    pub components: Vec<ComponentModel>,
    /// Components with no model, and why.
    #[serde(default)]
    pub skipped: BTreeMap<Component, String>,
}

impl Artifact {
    /// A new artifact, created now and versioned by its content.
    pub fn new(
        training: Training,
        data: DataSummary,
        components: Vec<ComponentModel>,
        skipped: BTreeMap<Component, String>,
    ) -> Artifact {
        let mut artifact = Artifact {
            format: FORMAT,
            version: String::new(),
            created_at: Utc::now(),
            training,
            data,
            components,
            skipped,
        };
        artifact.assign_version();
        artifact
    }

    /// A version that names the instant and the content: `risk-20261125T101500Z-1a2b3c4d`.
    pub fn assign_version(&mut self) {
        let body = serde_json::to_vec(&(&self.training, &self.components)).unwrap_or_default();
        let digest = hex::encode(Sha256::digest(&body));
        self.version = format!(
            "risk-{}-{}",
            self.created_at.format("%Y%m%dT%H%M%SZ"),
            &digest[..8]
        );
    }

    pub fn load(path: &Path) -> Result<Artifact, ArtifactError> {
        let display = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ArtifactError::Read {
            path: display.clone(),
            source,
        })?;
        let invalid = |reason: String| ArtifactError::Invalid {
            path: display.clone(),
            reason,
        };
        let artifact: Artifact =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if artifact.format != FORMAT {
            return Err(invalid(format!(
                "format {} (this build reads format {FORMAT})",
                artifact.format
            )));
        }
        for cm in &artifact.components {
            if let Some(unknown) = cm
                .features
                .iter()
                .find(|f| feature_list::index_of(f).is_none())
            {
                return Err(invalid(format!(
                    "{} uses feature {unknown:?}, which this build does not compute",
                    cm.component
                )));
            }
            for h in &cm.horizons {
                if h.model.prep.median.len() != cm.features.len()
                    || logistic_widths(&h.model.learner).any(|w| w != cm.features.len())
                {
                    return Err(invalid(format!(
                        "{} {}-day model does not match its {} features",
                        cm.component,
                        h.days,
                        cm.features.len()
                    )));
                }
            }
        }
        Ok(artifact)
    }

    /// Writes `risk-<version>.json` and `.md` into `dir` and replaces `current.json` and
    /// `current.md` atomically. Returns the versioned JSON path.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, ArtifactError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| ArtifactError::Invalid {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let card = self.card();
        let versioned = dir.join(format!("{}.json", self.version));
        write_atomic(&versioned, &json)?;
        write_atomic(&dir.join(format!("{}.md", self.version)), card.as_bytes())?;
        write_atomic(&dir.join("current.md"), card.as_bytes())?;
        write_atomic(&dir.join("current.json"), &json)?;
        Ok(versioned)
    }

    /// The model card: what it is for, what it was trained on, how it did, where it fails.
    pub fn card(&self) -> String {
        let mut s = String::new();
        let t = &self.training;
        let _ = writeln!(s, "# Model card: {}\n", self.version);
        let _ = writeln!(
            s,
            "Failure risk per vehicle and component group: the probability that the component \
             needs a repair (or is found failing and fixed early) within {} days. Scores feed \
             proactive maintenance offers; each comes with its top contributing factors.\n",
            t.horizons
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(s, "- Created: {}", self.created_at.to_rfc3339());
        let _ = writeln!(
            s,
            "- Training window: {} to {}, snapshots every {} days (UTC midnights)",
            t.window.from.date_naive(),
            t.window.to.date_naive(),
            t.window.cadence_days
        );
        let _ = writeln!(
            s,
            "- Time split at {}: training snapshots whose horizon ends by then, validation \
             snapshots from then on (no snapshot's label window overlaps the other side)",
            t.split_at.date_naive()
        );
        let _ = writeln!(
            s,
            "- Learners: logistic regression (linfa-logistic, L2 α = {}, negatives undersampled \
             to {}:1 but at least {} kept, with prior correction); a rule-anchored logistic \
             regression (on the component's rule ratio alone: the rule baseline, calibrated), \
             a compact logistic regression (the rule ratio and the component's signal \
             statistics only), a forest of linfa-trees ({}), and \"learned or rule\": the \
             higher of the best of those and the calibrated rule's probabilities; each chosen \
             only when its validation PR-AUC is higher by {} or more; when the chosen learner ranks validation no better than \
             chance (ROC-AUC ≤ 0.5), the best candidate that does, else the training base rate",
            t.config.alpha,
            t.config.max_negative_ratio,
            t.config.min_negatives,
            match &t.config.forest {
                Some(f) => format!(
                    "{} trees, depth ≤ {}, balanced bootstraps, Platt-calibrated on validation",
                    f.trees, f.max_depth
                ),
                None => "disabled".into(),
            },
            t.config.forest_margin
        );
        if t.config.refit {
            let _ = writeln!(
                s,
                "- A chosen logistic model (all features, rule-anchored or compact, alone or as a \
                 side of \"learned or rule\") is then fitted again on the training and validation \
                 snapshots together, so it learns from the latest failures too; the validation \
                 figures below are those of the split fit"
            );
        }
        let _ = writeln!(s, "- Labels: {}\n", t.labels);
        let _ = writeln!(s, "## Data\n");
        let _ = writeln!(
            s,
            "{} vehicles, {} snapshots, {:.1} weeks.\n",
            self.data.vehicles, self.data.snapshots, self.data.weeks
        );
        let _ = writeln!(
            s,
            "| component | routine jobs | repairs | preventive | repairs + preventive per week |"
        );
        let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: |");
        for c in Component::ALL {
            let j = self.data.jobs.get(&c).cloned().unwrap_or_default();
            let _ = writeln!(
                s,
                "| {c} | {} | {} | {} | {:.2} |",
                j.routine,
                j.repair,
                j.preventive,
                self.data.weekly_jobs(c)
            );
        }
        let _ = writeln!(s, "\n## Validation (later part of the training window)\n");
        let _ = writeln!(
            s,
            "| component | horizon | learner | train rows (pos.) | valid rows (pos.) | ROC-AUC | PR-AUC | rule PR-AUC | Brier | ECE | threshold | precision | recall | F1 |"
        );
        let _ = writeln!(
            s,
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for cm in &self.components {
            for h in &cm.horizons {
                let m = &h.model;
                let Some(v) = m.validation.first() else {
                    continue;
                };
                let _ = writeln!(
                    s,
                    "| {} | {} d | {} | {} ({}) | {} ({}) | {} | {} | {} | {} | {} | {:.3} | {:.2} | {:.2} | {:.2} |",
                    cm.component,
                    h.days,
                    v.learner,
                    m.train_rows,
                    m.train_positives,
                    v.rows,
                    v.positives,
                    opt(v.roc_auc),
                    opt(v.pr_auc),
                    opt(h.rule_baseline.as_ref().and_then(|r| r.pr_auc)),
                    opt(v.brier),
                    opt(v.ece),
                    m.threshold,
                    v.precision,
                    v.recall,
                    v.f1
                );
            }
        }
        let _ = writeln!(s, "\nOther learners tried (validation PR-AUC):\n");
        for cm in &self.components {
            for h in &cm.horizons {
                let others: Vec<String> = h
                    .model
                    .validation
                    .iter()
                    .skip(1)
                    .map(|v| format!("{} {}", v.learner, opt(v.pr_auc)))
                    .collect();
                if !others.is_empty() {
                    let _ = writeln!(s, "- {} {} d: {}", cm.component, h.days, others.join(", "));
                }
            }
        }
        let _ = writeln!(s, "\n## Strongest features (30-day model)\n");
        for cm in &self.components {
            let Some(h) = cm
                .horizons
                .iter()
                .find(|h| h.days == 30)
                .or(cm.horizons.first())
            else {
                continue;
            };
            let _ = writeln!(
                s,
                "- {}: {}",
                cm.component,
                strongest(cm, &h.model).join(", ")
            );
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(s, "\n## Not trained\n");
            for (c, why) in &self.skipped {
                let _ = writeln!(s, "- {c}: {why}");
            }
        }
        let _ = writeln!(
            s,
            "\n## Calibration\n\nReliability bins of the chosen learner on validation (30-day \
             horizon): mean predicted vs observed share.\n"
        );
        for cm in &self.components {
            if let Some(v) = cm
                .horizons
                .iter()
                .find(|h| h.days == 30)
                .and_then(|h| h.model.validation.first())
            {
                let bins: Vec<String> = v
                    .calibration
                    .iter()
                    .map(|b| format!("{:.2}→{:.2} (n={})", b.mean_predicted, b.observed, b.n))
                    .collect();
                let _ = writeln!(s, "- {}: {}", cm.component, bins.join("; "));
            }
        }
        let _ = writeln!(
            s,
            "\n## Limits\n\n\
             - Learned from what workshops fixed: failures no workshop recorded are invisible, and \
             a fleet whose workshops replace parts early teaches the model their habits.\n\
             - Validation metrics of a Platt-calibrated forest are measured on the data its \
             calibration was fitted on; `aftercare model evaluate` on a later window is the \
             independent check.\n\
             - Components that fail without precursors cannot be predicted from telemetry; their \
             risk stays near the base rate.\n\
             - Scores assume the signal catalogue (`src/catalog.rs`) of this build."
        );
        s
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into())
}

/// Coefficient counts of the logistic models inside a learner.
fn logistic_widths(learner: &Learner) -> Box<dyn Iterator<Item = usize> + '_> {
    match learner {
        Learner::Logistic(l) => Box::new(std::iter::once(l.coef.len())),
        Learner::Either { learned, rule } => {
            Box::new(logistic_widths(learned).chain(std::iter::once(rule.coef.len())))
        }
        Learner::Forest { .. } | Learner::Prior { .. } => Box::new(std::iter::empty()),
    }
}

/// Per-feature weight: |coefficient| for logistic models, split counts for forests, the sum
/// of both sides' for the higher-of-two model; `None` for the base rate.
fn weights(features: usize, learner: &Learner) -> Option<Vec<f64>> {
    match learner {
        Learner::Logistic(l) => Some(l.coef.iter().map(|c| c.abs()).collect()),
        Learner::Forest { forest, .. } => Some(
            forest
                .split_counts(features)
                .into_iter()
                .map(|c| c as f64)
                .collect(),
        ),
        Learner::Prior { .. } => None,
        Learner::Either { learned, rule } => {
            let mut w = weights(features, learned).unwrap_or_else(|| vec![0.0; features]);
            for (w, c) in w.iter_mut().zip(&rule.coef) {
                *w += c.abs();
            }
            Some(w)
        }
    }
}

/// Up to six features with the largest weight: |coefficient| for logistic models, split
/// counts for forests.
fn strongest(cm: &ComponentModel, model: &BinaryModel) -> Vec<String> {
    let Some(weights) = weights(cm.features.len(), &model.learner) else {
        return vec!["(base rate only)".into()];
    };
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
    order
        .into_iter()
        .take(6)
        .filter(|&j| weights[j] > 0.0)
        .map(|j| format!("{} ({:.2})", cm.features[j], weights[j]))
        .collect()
}

/// Writes to a temporary file beside `path`, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    let err = |source| ArtifactError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
