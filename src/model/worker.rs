//! The online scoring worker. It keeps the current artifact loaded, swapping in a new one when
//! the file changes (checked by modification time, size and inode every `reload_check`; write
//! a new artifact next to it and rename it over the old, as `aftercare model train` does),
//! consumes `score_dirty` marks (debounced; see `store::risk::claim_marks`), scores the
//! vehicles as of now, writes history and current scores, and releases the marks. Before it
//! reads histories it folds the rollup deltas committed so far (`store::fold_committed`), so
//! it sees everything ingest stored before the marks it claimed. A vehicle with no data to
//! score keeps its mark with the reason, counted and logged, until new data comes. A periodic
//! sweep marks vehicles whose scores are stale or come from another model version, so risk
//! moves with time (days since service grow) and a new model re-scores the fleet.
//! Any number of workers (instances) can share the queue.

use super::artifact::Artifact;
use super::dataset;
use super::features;
use super::score::Scorer;
use crate::config::ModelConfig;
use crate::metrics::Metrics;
use crate::store::risk::Unscored;
use crate::store::stats::{self, BulkTable};
use crate::store::{fold_committed, history, risk, StoreError};
use chrono::Utc;
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub artifact: PathBuf,
    pub debounce: Duration,
    pub max_delay: Duration,
    pub lease: Duration,
    pub poll: Duration,
    pub batch: i64,
    pub sweep_every: Duration,
    pub stale_after: Duration,
    pub reload_check: Duration,
}

/// The `[model]` settings, as durations (the worker reads its settings; they do not know it).
impl From<&ModelConfig> for WorkerConfig {
    fn from(c: &ModelConfig) -> WorkerConfig {
        WorkerConfig {
            artifact: c.artifact.clone(),
            debounce: Duration::from_millis(c.debounce_ms),
            max_delay: Duration::from_millis(c.max_delay_ms),
            lease: Duration::from_secs(c.lease_secs),
            poll: Duration::from_millis(c.poll_ms.max(10)),
            batch: c.batch,
            sweep_every: Duration::from_secs(c.sweep_interval_secs),
            stale_after: Duration::from_secs(c.stale_after_hours * 3600),
            reload_check: Duration::from_millis(c.reload_check_ms.max(10)),
        }
    }
}

/// The model in use, shared with whoever wants to know its version.
#[derive(Default)]
pub struct ModelSlot(RwLock<Option<Arc<Scorer>>>);

impl ModelSlot {
    pub fn get(&self) -> Option<Arc<Scorer>> {
        self.0.read().ok().and_then(|g| g.clone())
    }

    pub fn version(&self) -> Option<String> {
        self.get().map(|s| s.version().to_owned())
    }

    fn set(&self, scorer: Scorer) {
        if let Ok(mut g) = self.0.write() {
            *g = Some(Arc::new(scorer));
        }
    }
}

/// What identifies a version of the artifact file on disk.
type FileStamp = (std::time::SystemTime, u64, u64);

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Loads the artifact if the file changed since `last`; keeps the current model on errors.
fn reload(path: &Path, last: &mut Option<FileStamp>, slot: &ModelSlot) -> bool {
    let now = stamp(path);
    if now.is_none() || now == *last {
        if now.is_none() && last.is_some() {
            tracing::warn!(path = %path.display(), "model artifact disappeared; keeping the loaded model");
            *last = None;
        }
        return false;
    }
    *last = now;
    match Artifact::load(path).and_then(Scorer::new) {
        Ok(scorer) => {
            tracing::info!(version = scorer.version(), path = %path.display(), "model loaded");
            slot.set(scorer);
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot use the new model artifact; keeping the loaded model");
            false
        }
    }
}

/// What one round of `score_due` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Marks claimed.
    pub claimed: usize,
    /// Vehicles scored.
    pub scored: usize,
    /// Vehicles claimed but not scored, and why (their marks are kept with the reason).
    pub unscored: Vec<(i32, Unscored)>,
}

/// Scores up to one batch of due marks.
pub async fn score_due(
    pool: &PgPool,
    scorer: &Scorer,
    cfg: &WorkerConfig,
) -> Result<Round, StoreError> {
    let claimed_at = Utc::now();
    let claims = risk::claim_marks(pool, cfg.batch, cfg.debounce, cfg.max_delay, cfg.lease).await?;
    if claims.is_empty() {
        return Ok(Round::default());
    }
    // Each mark committed with its data's rollup delta: once the deltas seen now are folded,
    // the daily rollup holds everything the marks stand for.
    fold_committed(pool).await?;
    let ids: Vec<i32> = claims.iter().map(|c| c.vehicle_id).collect();
    let (scored, unscored) = score_vehicles(pool, scorer, &ids).await?;
    risk::release_marks(pool, &claims, claimed_at, &unscored).await?;
    for why in [Unscored::NoRecentData, Unscored::NoVehicle] {
        let ids: Vec<i32> = unscored
            .iter()
            .filter(|(_, w)| *w == why)
            .map(|(id, _)| *id)
            .collect();
        if !ids.is_empty() {
            tracing::info!(reason = why.as_str(), vehicles = ids.len(),
                first_ids = ?&ids[..ids.len().min(5)], "score marks kept without a score");
        }
    }
    Ok(Round {
        claimed: claims.len(),
        scored,
        unscored,
    })
}

/// Scores the vehicles as of now and writes the scores; returns how many were scored and
/// which were not, and why. Vehicles with no data in the last 30 days keep their previous
/// scores.
pub async fn score_vehicles(
    pool: &PgPool,
    scorer: &Scorer,
    ids: &[i32],
) -> Result<(usize, Vec<(i32, Unscored)>), StoreError> {
    let now = Utc::now();
    let histories = history::load(pool, ids, &dataset::span(now, now)).await?;
    let mut unscored: Vec<(i32, Unscored)> = ids
        .iter()
        .filter(|id| !histories.iter().any(|h| h.vehicle_id == **id))
        .map(|id| (*id, Unscored::NoVehicle))
        .collect();
    let mut scored_ids = Vec::new();
    let mut rows = Vec::new();
    for h in &histories {
        let snapshot = features::compute(h, now);
        if !snapshot.active {
            unscored.push((h.vehicle_id, Unscored::NoRecentData));
            continue;
        }
        scored_ids.push(h.vehicle_id);
        for s in scorer.score_snapshot(&snapshot) {
            rows.push(risk::NewScore {
                vehicle_id: h.vehicle_id,
                component: s.component.as_str(),
                p: s.p.map(|p| p as f32),
                urgency_days: s.urgency_days.map(|u| u as f32),
                factors: serde_json::to_value(&s.factors).unwrap_or_default(),
            });
        }
    }
    if !scored_ids.is_empty() {
        risk::write_scores(pool, &scored_ids, scorer.version(), now, &rows).await?;
    }
    Ok((scored_ids.len(), unscored))
}

/// Counts a round's marks by what became of them.
fn count_round(metrics: &Metrics, round: &Round) {
    metrics.score_marks_released("scored", round.scored as u64);
    for why in [Unscored::NoRecentData, Unscored::NoVehicle] {
        let n = round.unscored.iter().filter(|(_, w)| *w == why).count();
        metrics.score_marks_released(why.as_str(), n as u64);
    }
}

/// Runs until `shutdown` turns true.
pub async fn run(
    pool: PgPool,
    cfg: WorkerConfig,
    slot: Arc<ModelSlot>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut stamp_seen = None;
    if stamp(&cfg.artifact).is_none() {
        tracing::warn!(path = %cfg.artifact.display(),
            "no model artifact yet; scoring starts when one appears (aftercare model train)");
    }
    let mut next_sweep = tokio::time::Instant::now();
    let mut next_reload = tokio::time::Instant::now();
    loop {
        let now = tokio::time::Instant::now();
        if now >= next_reload {
            next_reload = now + cfg.reload_check;
            if reload(&cfg.artifact, &mut stamp_seen, &slot) {
                next_sweep = now; // re-score the fleet with the new model
            }
        }
        if let Some(scorer) = slot.get() {
            if now >= next_sweep {
                next_sweep = now + cfg.sweep_every;
                match risk::mark_stale(&pool, scorer.version(), cfg.stale_after, cfg.debounce).await
                {
                    Ok(n) if n > 0 => {
                        tracing::info!(vehicles = n, "stale scores marked for re-scoring")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "stale sweep failed; retrying later"),
                }
            }
            let mut scored = 0;
            loop {
                match score_due(&pool, &scorer, &cfg).await {
                    Ok(round) => {
                        count_round(&metrics, &round);
                        scored += round.scored;
                        if round.claimed as i64 >= cfg.batch && !*shutdown.borrow() {
                            continue;
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "scoring failed; retrying");
                        break;
                    }
                }
            }
            if scored > 0 {
                stats::keep_fresh(&pool, &[BulkTable::RiskCurrent, BulkTable::RiskScores]).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.poll) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
