//! Backtest of the demand preview: the preview made as of a past date, from what was known
//! then (each vehicle's risk scored with the model on its history up to that date), against
//! the work that then actually arrived at each workshop (repair and preventive service
//! records, priced in hours of their component's default job). A naive forecast — the
//! average weekly hours of the 8 weeks before — is scored the same way, so the error has a
//! yardstick. Simulated history has no offers or bookings, so only the risk term is tested.

use crate::capacity::preview::{self, AtRisk, PreviewInput};
use crate::model::artifact::{Artifact, ArtifactError};
use crate::model::dataset::{for_each_history, Window};
use crate::model::score::Scorer;
use crate::store::preview::{arrived_work, default_jobs, home_workshops, preview_input};
use crate::store::StoreError;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("{0}")]
    Invalid(String),
}

/// Naive forecast: the average weekly hours of this many weeks before the date.
pub const NAIVE_WEEKS: i64 = 8;
/// Risks below this (largest horizon) are left out, as in the live preview.
pub const MIN_RISK: f64 = 0.02;

#[derive(Debug, Clone, Default, Serialize)]
pub struct CellError {
    pub workshop: String,
    pub skill: String,
    pub week: i64,
    pub actual_hours: f64,
    pub preview_hours: f64,
    pub naive_hours: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Backtest {
    pub as_of: NaiveDate,
    pub weeks: i64,
    pub model_version: String,
    pub vehicles_scored: usize,
    pub cells: Vec<CellError>,
    pub actual_hours: f64,
    pub preview_hours: f64,
    pub naive_hours: f64,
    /// Σ|forecast − actual| / Σ actual over (workshop, skill, week) cells.
    pub preview_wape: f64,
    pub naive_wape: f64,
}

/// Weighted absolute percentage error and the forecast/actual ratio of a set of cells.
pub fn wape(pairs: impl Iterator<Item = (f64, f64)>) -> f64 {
    let (mut err, mut actual) = (0.0, 0.0);
    for (forecast, act) in pairs {
        err += (forecast - act).abs();
        actual += act;
    }
    if actual > 0.0 {
        err / actual
    } else {
        f64::NAN
    }
}

pub async fn run(
    pool: &PgPool,
    artifact: &Path,
    as_of: NaiveDate,
    weeks: i64,
) -> Result<Backtest, BacktestError> {
    if !(1..=13).contains(&weeks) {
        return Err(BacktestError::Invalid(format!(
            "weeks {weeks}: expected 1 to 13"
        )));
    }
    let scorer = Scorer::new(Artifact::load(artifact)?)?;
    let at: DateTime<Utc> = as_of.and_time(chrono::NaiveTime::MIN).and_utc();
    let homes = home_workshops(pool).await?;
    let jobs = default_jobs(pool).await?;
    // Without a job catalogue nothing can be priced in hours, and without home workshops
    // nothing lands anywhere: say so rather than report zeros.
    if jobs.is_empty() {
        return Err(BacktestError::Invalid(
            "no jobs in the catalogue: load parts, jobs and workshops first \
             (aftercare workshops load FILE)"
                .into(),
        ));
    }
    if homes.is_empty() {
        return Err(BacktestError::Invalid(
            "no vehicle has a home workshop (vehicle profiles name it)".into(),
        ));
    }

    // Risk as it stood on the date: history up to then, scored as of then.
    let mut at_risk: HashMap<String, Vec<AtRisk>> = HashMap::new();
    let window = Window {
        from: at,
        to: at,
        cadence_days: 1,
    };
    let mut scored = 0;
    for_each_history(pool, &window, at, true, |h| {
        let Some(home) = homes.get(&h.vehicle_id) else {
            return;
        };
        scored += 1;
        for s in scorer.score(h, at) {
            let Some((job, skill, minutes)) = jobs.get(s.component.as_str()) else {
                continue;
            };
            if s.p.iter().copied().fold(0.0, f64::max) < MIN_RISK {
                continue;
            }
            at_risk.entry(home.clone()).or_default().push(AtRisk {
                vin: h.vin.clone(),
                job: job.clone(),
                skill: skill.clone(),
                minutes: *minutes,
                p7: s.p[0],
                p30: s.p[1],
                p90: s.p[2],
            });
        }
    })
    .await?;

    let days = (weeks * 7) as u32;
    let end = at + Duration::days(weeks * 7);
    let mut cells = Cells::new();
    for a in arrived_work(pool, at, end).await? {
        cell(&mut cells, &a.workshop, &a.skill, a.day / 7).actual_hours += a.hours;
    }
    let before = arrived_work(pool, at - Duration::weeks(NAIVE_WEEKS), at).await?;
    let mut naive: BTreeMap<(String, String), f64> = BTreeMap::new();
    for a in before {
        *naive.entry((a.workshop, a.skill)).or_default() += a.hours / NAIVE_WEEKS as f64;
    }
    for ((w, skill), hours) in &naive {
        for week in 0..weeks {
            cell(&mut cells, w, skill, week).naive_hours += hours;
        }
    }
    let mut codes: Vec<String> = homes.values().cloned().collect();
    codes.sort();
    codes.dedup();
    let mut known = 0;
    for code in &codes {
        let Some((_, base)) = preview_input(pool, code, at, end, MIN_RISK).await? else {
            continue; // a home workshop the capacity model does not know
        };
        known += 1;
        let input = PreviewInput {
            booked: Vec::new(),
            offers: Vec::new(),
            at_risk: at_risk.remove(code).unwrap_or_default(),
            as_of: at,
            ..base
        };
        for c in preview::preview(&input, as_of, days) {
            let week = (c.day - as_of).num_days() / 7;
            cell(&mut cells, code, &c.skill, week).preview_hours += c.demand_hours;
        }
    }
    if known == 0 {
        return Err(BacktestError::Invalid(format!(
            "none of the fleet's home workshops ({}) is configured: load them first \
             (aftercare workshops load FILE)",
            codes.join(", ")
        )));
    }
    let cells: Vec<CellError> = cells.into_values().collect();
    // `+ 0.0`: an empty float sum is -0.0, which would print as "-0.0".
    let sum = |f: fn(&CellError) -> f64| cells.iter().map(f).sum::<f64>() + 0.0;
    Ok(Backtest {
        as_of,
        weeks,
        model_version: scorer.version().to_owned(),
        vehicles_scored: scored,
        actual_hours: sum(|c| c.actual_hours),
        preview_hours: sum(|c| c.preview_hours),
        naive_hours: sum(|c| c.naive_hours),
        preview_wape: wape(cells.iter().map(|c| (c.preview_hours, c.actual_hours))),
        naive_wape: wape(cells.iter().map(|c| (c.naive_hours, c.actual_hours))),
        cells,
    })
}

type Cells = BTreeMap<(String, String, i64), CellError>;

fn cell<'a>(cells: &'a mut Cells, w: &str, skill: &str, week: i64) -> &'a mut CellError {
    cells
        .entry((w.to_owned(), skill.to_owned(), week))
        .or_insert_with(|| CellError {
            workshop: w.to_owned(),
            skill: skill.to_owned(),
            week,
            ..CellError::default()
        })
}

impl Backtest {
    pub fn summary(&self) -> String {
        // Ratios and WAPE are undefined when no work arrived in the period.
        let figure = |v: f64, decimals: usize| {
            if v.is_finite() {
                format!("{v:.decimals$}")
            } else {
                "n/a".to_owned()
            }
        };
        let ratio = |forecast: f64| figure(forecast / self.actual_hours, 2);
        let mut text = format!(
            "demand preview backtest as of {} over {} weeks (model {}, {} vehicles)\n\
             actual hours {:.1}; preview {:.1} (ratio {}); naive {:.1} (ratio {})\n\
             WAPE per workshop, skill and week: preview {}, naive {}",
            self.as_of,
            self.weeks,
            self.model_version,
            self.vehicles_scored,
            self.actual_hours,
            self.preview_hours,
            ratio(self.preview_hours),
            self.naive_hours,
            ratio(self.naive_hours),
            figure(self.preview_wape, 3),
            figure(self.naive_wape, 3),
        );
        if self.actual_hours <= 0.0 {
            text.push_str(
                "\nno repair or preventive work arrived in the period: nothing to judge by",
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::wape;

    #[test]
    fn a_period_without_work_reads_n_a_not_nan() {
        let report = super::Backtest {
            as_of: chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            weeks: 4,
            model_version: "m".into(),
            vehicles_scored: 3,
            cells: Vec::new(),
            actual_hours: 0.0,
            preview_hours: 1.5,
            naive_hours: 0.0,
            preview_wape: f64::NAN,
            naive_wape: f64::NAN,
        };
        let text = report.summary();
        assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
        assert!(text.contains("preview 1.5 (ratio n/a)"), "{text}");
        assert!(text.contains("WAPE per workshop, skill and week: preview n/a, naive n/a"));
        assert!(text.ends_with("nothing to judge by"), "{text}");
    }

    #[test]
    fn wape_weighs_errors_by_actual_volume() {
        assert_eq!(wape([(8.0, 10.0), (3.0, 0.0)].into_iter()), 0.5);
        assert!(wape([(1.0, 0.0)].into_iter()).is_nan());
    }
}
