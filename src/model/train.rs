//! Training the fleet model: one classifier per component and horizon, on snapshots from the
//! database, with a time-based split. A training snapshot's label window must end by the split
//! (an embargo as long as the horizon), validation snapshots start at it, so no label is
//! shared across the split.

use super::artifact::{Artifact, ComponentModel, DataSummary, HorizonModel, Training};
use super::dataset::{self, Dataset, Window};
use super::feature_list;
use super::learn::{self, Split, TrainConfig};
use super::rules;
use crate::component::Component;
use crate::store::StoreError;
use chrono::{DateTime, Duration, Utc};
use indicatif::ProgressBar;
use sqlx::PgPool;
use std::collections::BTreeMap;

pub const LABEL_RULE: &str = "positive when a service record of the component with kind \
    `repair` or `preventive` has performed_at in [snapshot, snapshot + horizon); `routine` \
    records are scheduled work and never positive";

#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{component} {days}-day model: {source}")]
    Fit {
        component: Component,
        days: i64,
        source: learn::TrainError,
    },
    #[error("invalid training setup: {0}")]
    Setup(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainSpec {
    pub window: Window,
    pub split_at: DateTime<Utc>,
    pub horizons: Vec<i64>,
    pub config: TrainConfig,
    pub show_progress: bool,
}

impl TrainSpec {
    pub fn check(&self) -> Result<(), TrainingError> {
        let w = &self.window;
        if w.from >= w.to || self.split_at <= w.from || self.split_at >= w.to {
            return Err(TrainingError::Setup(format!(
                "need from < split < to, got {} / {} / {}",
                w.from, self.split_at, w.to
            )));
        }
        if self.horizons.is_empty()
            || self.horizons.len() > 4
            || self.horizons.iter().any(|&h| h < 1)
        {
            return Err(TrainingError::Setup(
                "horizons: one to four positive day counts".into(),
            ));
        }
        if w.cadence_days < 1 {
            return Err(TrainingError::Setup(
                "cadence must be at least one day".into(),
            ));
        }
        Ok(())
    }
}

/// Builds the dataset from the database and fits every model.
pub async fn train(pool: &PgPool, spec: &TrainSpec) -> Result<Artifact, TrainingError> {
    spec.check()?;
    let data = dataset::build(
        pool,
        &spec.window,
        &spec.horizons,
        spec.window.to,
        spec.show_progress,
    )
    .await?;
    fit(&data, spec)
}

/// Fits one model per component and horizon on an already built dataset.
pub fn fit(data: &Dataset, spec: &TrainSpec) -> Result<Artifact, TrainingError> {
    spec.check()?;
    let bar = if spec.show_progress {
        dataset::progress_bar(
            (Component::ALL.len() * spec.horizons.len()) as u64,
            "models",
        )
    } else {
        ProgressBar::hidden()
    };
    let mut components = Vec::new();
    let mut skipped = BTreeMap::new();
    for (c, &component) in Component::ALL.iter().enumerate() {
        let columns = feature_list::for_component(component);
        let rule_column = feature_list::index_of(&format!("{component}.rule.ratio"))
            .and_then(|g| columns.iter().position(|&j| j == g));
        let config = learn::TrainConfig {
            anchor: rule_column,
            ..spec.config
        };
        // The compact candidate: the rule ratio and the component's signal statistics.
        let all = feature_list::all();
        let compact: Vec<usize> = columns
            .iter()
            .enumerate()
            .filter(|(_, &g)| {
                matches!(
                    all[g].kind,
                    feature_list::Kind::Rule | feature_list::Kind::Signal { .. }
                )
            })
            .map(|(k, _)| k)
            .collect();
        let mut horizons = Vec::new();
        for (h, &days) in spec.horizons.iter().enumerate() {
            bar.inc(1);
            let horizon = Duration::days(days);
            let train_rows = data.rows_for(c, h, |r| r.at + horizon <= spec.split_at);
            let valid_rows = data.rows_for(c, h, |r| r.at >= spec.split_at);
            if train_rows.is_empty() {
                skipped.insert(
                    component,
                    format!("no training snapshots for the {days}-day horizon"),
                );
                horizons.clear();
                break;
            }
            let (xt, yt) = data.matrix(&train_rows, &columns, c, h);
            let (xv, yv) = data.matrix(&valid_rows, &columns, c, h);
            let model = learn::train_binary_with(
                Split {
                    x: xt.view(),
                    y: &yt,
                },
                Split {
                    x: xv.view(),
                    y: &yv,
                },
                &config,
                &compact,
            )
            .map_err(|source| TrainingError::Fit {
                component,
                days,
                source,
            })?;
            let rule_scores: Vec<f64> = valid_rows
                .iter()
                .map(|&i| rules::score(component, &data.values_f64(i)))
                .collect();
            let rule_baseline = (!valid_rows.is_empty())
                .then(|| learn::validate("rules", &rule_scores, &yv, 1.0, false));
            horizons.push(HorizonModel {
                days,
                model,
                rule_baseline,
            });
        }
        if !horizons.is_empty() {
            components.push(ComponentModel::new(component, horizons));
        }
    }
    bar.finish_and_clear();
    Ok(Artifact::new(
        Training {
            window: spec.window,
            split_at: spec.split_at,
            horizons: spec.horizons.clone(),
            config: spec.config,
            labels: LABEL_RULE.to_owned(),
        },
        DataSummary {
            vehicles: data.vehicles,
            snapshots: data.rows.len(),
            weeks: (spec.window.to - spec.window.from).num_seconds() as f64 / (7.0 * 86_400.0),
            jobs: data.jobs.clone(),
        },
        components,
        skipped,
    ))
}
