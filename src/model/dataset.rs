//! Examples for training: every vehicle's features at snapshots on a fixed cadence (UTC
//! midnights) over a window, with labels per component and horizon from its service
//! records. Histories are loaded a chunk of vehicles at a time; features are stored as f32
//! (about 0.5 KiB per snapshot).

use super::feature_list;
use super::features::{self, Snapshot};
use super::labels;
use crate::component::Component;
use crate::store::history::{self as store_history, Span};
use crate::store::StoreError;
use crate::vehicle::{floor_day, has_component, History, ServiceKind};
use chrono::{DateTime, Duration, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::BTreeMap;

/// Vehicles loaded per round trip (two years of rollups for 25 vehicles: about 0.5 M rows).
const CHUNK: usize = 25;
/// Signal history a snapshot's features look back over (longest window plus a day)...
pub const SIGNAL_LOOKBACK_DAYS: i64 = feature_list::WINDOW_DAYS + 1;
/// ...and for the signals of `feature_list::long_window_signals` (end-of-life trends).
pub const LONG_SIGNAL_LOOKBACK_DAYS: i64 = feature_list::LIMIT_TREND_DAYS + 1;
/// DTC history a snapshot's features look back over.
pub const EVENT_LOOKBACK_DAYS: i64 = 365;

/// What to load for snapshots from `from` (the first) to `until`.
pub fn span(from: DateTime<Utc>, until: DateTime<Utc>) -> Span<'static> {
    Span {
        signals_from: from - Duration::days(SIGNAL_LOOKBACK_DAYS),
        long_signals: feature_list::long_window_signals(),
        long_from: from - Duration::days(LONG_SIGNAL_LOOKBACK_DAYS),
        events_from: from - Duration::days(EVENT_LOOKBACK_DAYS),
        until,
    }
}

/// Snapshot instants: midnights from `from` (rounded down) every `cadence_days`, before `to`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub cadence_days: i64,
}

impl Window {
    pub fn snapshots(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let step = Duration::days(self.cadence_days.max(1));
        std::iter::successors(Some(floor_day(self.from)), move |t| Some(*t + step))
            .take_while(move |t| *t < self.to)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub vehicle_id: i32,
    pub at: DateTime<Utc>,
    /// Bit c: the vehicle has component c (`Component::ALL` order).
    pub components: u8,
    /// Bit c * 4 + h: component c needed fixing within horizon h.
    pub positive: u32,
}

impl Row {
    pub fn has(&self, c: usize) -> bool {
        self.components & (1 << c) != 0
    }

    pub fn is_positive(&self, c: usize, h: usize) -> bool {
        self.positive & (1 << (c * 4 + h)) != 0
    }
}

/// Work done on each component in a window, by kind (the data summary of the artifact).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobCounts {
    pub routine: usize,
    pub repair: usize,
    pub preventive: usize,
}

pub struct Dataset {
    pub horizons: Vec<i64>,
    /// Labels are complete for snapshots whose horizon ends by this instant.
    pub label_end: DateTime<Utc>,
    pub rows: Vec<Row>,
    x: Vec<f32>,
    pub n_features: usize,
    pub vehicles: usize,
    pub jobs: BTreeMap<Component, JobCounts>,
}

impl Dataset {
    pub fn new(horizons: &[i64], label_end: DateTime<Utc>) -> Dataset {
        Dataset {
            horizons: horizons.iter().copied().take(4).collect(),
            label_end,
            rows: Vec::new(),
            x: Vec::new(),
            n_features: feature_list::all().len(),
            vehicles: 0,
            jobs: BTreeMap::new(),
        }
    }

    /// Adds the vehicle's snapshots in `window` (only those where it reported anything in
    /// the 30 days before), and counts its service jobs in the window.
    pub fn add(&mut self, history: &History, window: &Window) {
        self.vehicles += 1;
        for s in &history.service {
            if s.performed_at >= window.from && s.performed_at < window.to {
                let counts = self.jobs.entry(s.component).or_default();
                match s.kind {
                    ServiceKind::Routine => counts.routine += 1,
                    ServiceKind::Repair => counts.repair += 1,
                    ServiceKind::Preventive => counts.preventive += 1,
                }
            }
        }
        let events: Vec<Vec<labels::Event>> = Component::ALL
            .iter()
            .map(|&c| labels::service_events(history, c))
            .collect();
        for at in window.snapshots() {
            let snapshot = features::compute(history, at);
            if !snapshot.active {
                continue;
            }
            let mut row = Row {
                vehicle_id: history.vehicle_id,
                at,
                components: 0,
                positive: 0,
            };
            for (c, &component) in Component::ALL.iter().enumerate() {
                if has_component(history.profile.powertrain, component) {
                    row.components |= 1 << c;
                }
                for (h, &days) in self.horizons.iter().enumerate() {
                    if labels::positive(&events[c], at, days) {
                        row.positive |= 1 << (c * 4 + h);
                    }
                }
            }
            self.push(row, &snapshot);
        }
    }

    fn push(&mut self, row: Row, snapshot: &Snapshot) {
        self.rows.push(row);
        self.x.extend(snapshot.values.iter().map(|&v| v as f32));
    }

    pub fn values(&self, i: usize) -> &[f32] {
        &self.x[i * self.n_features..(i + 1) * self.n_features]
    }

    /// Global feature vector of row `i` as f64 (NaN where missing).
    pub fn values_f64(&self, i: usize) -> Vec<f64> {
        self.values(i).iter().map(|&v| f64::from(v)).collect()
    }

    /// Rows where component `c` exists, the row passes `keep`, and the label of horizon `h`
    /// is complete by `label_end`.
    pub fn rows_for(&self, c: usize, h: usize, keep: impl Fn(&Row) -> bool) -> Vec<usize> {
        let horizon = Duration::days(self.horizons[h]);
        (0..self.rows.len())
            .filter(|&i| {
                let r = &self.rows[i];
                r.has(c) && r.at + horizon <= self.label_end && keep(r)
            })
            .collect()
    }

    /// The model matrix (columns `columns`, global indices) and labels of `rows`.
    pub fn matrix(
        &self,
        rows: &[usize],
        columns: &[usize],
        c: usize,
        h: usize,
    ) -> (Array2<f64>, Vec<bool>) {
        let x = Array2::from_shape_fn((rows.len(), columns.len()), |(r, j)| {
            f64::from(self.values(rows[r])[columns[j]])
        });
        let y = rows
            .iter()
            .map(|&i| self.rows[i].is_positive(c, h))
            .collect();
        (x, y)
    }
}

pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Loads every vehicle's history up to `label_end` in chunks and hands each, with the
/// window, to `visit`.
pub async fn for_each_history(
    pool: &PgPool,
    window: &Window,
    label_end: DateTime<Utc>,
    show_progress: bool,
    mut visit: impl FnMut(&History),
) -> Result<usize, StoreError> {
    let ids = store_history::vehicle_ids(pool).await?;
    let bar = if show_progress {
        progress_bar(ids.len() as u64, "vehicles")
    } else {
        ProgressBar::hidden()
    };
    for chunk in ids.chunks(CHUNK) {
        let histories = store_history::load(pool, chunk, &span(window.from, label_end)).await?;
        for h in &histories {
            visit(h);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(ids.len())
}

/// Snapshots of every vehicle in `window`, labelled from service records up to `label_end`.
pub async fn build(
    pool: &PgPool,
    window: &Window,
    horizons: &[i64],
    label_end: DateTime<Utc>,
    show_progress: bool,
) -> Result<Dataset, StoreError> {
    let mut data = Dataset::new(horizons, label_end);
    for_each_history(pool, window, label_end, show_progress, |h| {
        data.add(h, window)
    })
    .await?;
    Ok(data)
}
