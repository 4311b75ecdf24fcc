//! Time partitions, retention and TimescaleDB's background jobs. Plain PostgreSQL: partitions
//! of the sample table and the DTC ledgers are made ahead and dropped past retention (through
//! the SQL functions of migration 31, which keep a registry). TimescaleDB: the hypertables'
//! chunk intervals follow the policy; with the Timescale licence its own compression and
//! retention policies do the work (reconciled with ours here, and watched); apache-only, the
//! service drops old chunks itself. On every flavour the daily rollup and the dead letters are
//! deleted past their retention. The policy lives in the database (`storage_policy`), written by
//! `aftercare migrate` and `serve` from their configuration, so every process agrees on it.

use super::{Flavor, StoreError};
use crate::metrics::{JobLabel, Metrics, TableLabel};
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use std::sync::Arc;

/// Chunk widths and retention, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct StoragePolicy {
    pub chunk_days: i32,
    pub dtc_chunk_days: i32,
    pub retention_days: i32,
    pub dtc_retention_days: i32,
    pub dead_letter_retention_days: i32,
    pub compress_after_days: i32,
    /// Partitions exist this far ahead of now (plain PostgreSQL).
    pub ahead_days: i32,
}

impl From<&crate::config::StorageConfig> for StoragePolicy {
    fn from(c: &crate::config::StorageConfig) -> Self {
        StoragePolicy {
            chunk_days: c.chunk_days,
            dtc_chunk_days: c.dtc_chunk_days,
            retention_days: c.retention_days,
            dtc_retention_days: c.dtc_retention_days,
            dead_letter_retention_days: c.dead_letter_retention_days,
            compress_after_days: c.compress_after_days,
            ahead_days: c.ahead_days,
        }
    }
}

/// The configuration's defaults (the same as migration 34's).
impl Default for StoragePolicy {
    fn default() -> Self {
        StoragePolicy::from(&crate::config::StorageConfig::default())
    }
}

/// A time-partitioned table (plain) or hypertable (TimescaleDB) and its policy.
struct Partitioned {
    table: &'static str,
    chunk_days: i32,
    retention_days: i32,
}

impl StoragePolicy {
    fn tables(&self) -> [Partitioned; 3] {
        [
            Partitioned {
                table: "samples",
                chunk_days: self.chunk_days,
                retention_days: self.retention_days,
            },
            Partitioned {
                table: "dtc_reports",
                chunk_days: self.dtc_chunk_days,
                retention_days: self.dtc_retention_days,
            },
            Partitioned {
                table: "dtc_events",
                chunk_days: self.dtc_chunk_days,
                retention_days: self.dtc_retention_days,
            },
        ]
    }
}

pub async fn read_policy(pool: &PgPool) -> Result<StoragePolicy, StoreError> {
    Ok(sqlx::query_as(
        "SELECT chunk_days, dtc_chunk_days, retention_days, dtc_retention_days,
                dead_letter_retention_days, compress_after_days, ahead_days
         FROM storage_policy",
    )
    .fetch_optional(pool)
    .await?
    .unwrap_or_default())
}

/// Records `policy` as the one every process follows and applies what TimescaleDB keeps
/// itself (chunk intervals; compression and retention policies with the Timescale licence).
/// Returns whether it differed from the recorded one.
pub async fn apply_policy(
    pool: &PgPool,
    flavor: Flavor,
    policy: &StoragePolicy,
) -> Result<bool, StoreError> {
    let before = read_policy(pool).await?;
    if before != *policy {
        sqlx::query(
            "UPDATE storage_policy SET chunk_days = $1, dtc_chunk_days = $2, retention_days = $3,
                    dtc_retention_days = $4, dead_letter_retention_days = $5,
                    compress_after_days = $6, ahead_days = $7, updated_at = now()",
        )
        .bind(policy.chunk_days)
        .bind(policy.dtc_chunk_days)
        .bind(policy.retention_days)
        .bind(policy.dtc_retention_days)
        .bind(policy.dead_letter_retention_days)
        .bind(policy.compress_after_days)
        .bind(policy.ahead_days)
        .execute(pool)
        .await?;
        tracing::info!(?before, now = ?policy, "storage policy changed");
    }
    if let Flavor::Timescale { tsl } = flavor {
        for t in policy.tables() {
            // New chunks only; existing ones keep their width.
            sqlx::query("SELECT set_chunk_time_interval($1::regclass, make_interval(days => $2))")
                .bind(t.table)
                .bind(t.chunk_days)
                .execute(pool)
                .await?;
            if tsl {
                reconcile_job(pool, t.table, Job::Compression, policy.compress_after_days).await?;
                reconcile_job(pool, t.table, Job::Retention, t.retention_days).await?;
            }
        }
    }
    Ok(before != *policy)
}

#[derive(Debug, Clone, Copy)]
enum Job {
    Compression,
    Retention,
}

impl Job {
    fn proc_name(self) -> &'static str {
        match self {
            Job::Compression => "policy_compression",
            Job::Retention => "policy_retention",
        }
    }

    fn config_key(self) -> &'static str {
        match self {
            Job::Compression => "compress_after",
            Job::Retention => "drop_after",
        }
    }
}

/// Makes TimescaleDB's policy of `job` on `table` act after `days`, replacing one with
/// another setting.
async fn reconcile_job(pool: &PgPool, table: &str, job: Job, days: i32) -> Result<(), StoreError> {
    let current: Vec<bool> = sqlx::query_scalar(
        "SELECT (config ->> $3)::interval = make_interval(days => $4)
         FROM timescaledb_information.jobs
         WHERE hypertable_name = $1 AND proc_name = $2",
    )
    .bind(table)
    .bind(job.proc_name())
    .bind(job.config_key())
    .bind(days)
    .fetch_all(pool)
    .await?;
    if current == [true] {
        return Ok(());
    }
    let (remove, add) = match job {
        Job::Compression => (
            "SELECT remove_compression_policy($1::regclass, if_exists => true)",
            "SELECT add_compression_policy($1::regclass, compress_after => make_interval(days => $2))",
        ),
        Job::Retention => (
            "SELECT remove_retention_policy($1::regclass, if_exists => true)",
            "SELECT add_retention_policy($1::regclass, drop_after => make_interval(days => $2))",
        ),
    };
    let mut tx = pool.begin().await?;
    sqlx::query(remove).bind(table).execute(&mut *tx).await?;
    sqlx::query(add)
        .bind(table)
        .bind(days)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(table, job = job.proc_name(), days, "TimescaleDB policy set");
    Ok(())
}

/// Makes sure partitions cover `now` up to `ahead_days` past it (plain PostgreSQL;
/// TimescaleDB makes chunks itself). Drops nothing. Nothing is made for the past: every read
/// plans each partition it touches, so empty ones behind the data would only cost; a write or
/// bulk load for an earlier range makes its own partition.
pub async fn ensure_partitions(
    pool: &PgPool,
    flavor: Flavor,
    now: DateTime<Utc>,
) -> Result<u32, StoreError> {
    if flavor != Flavor::Plain {
        return Ok(0);
    }
    let policy = read_policy(pool).await?;
    let mut created = 0;
    for t in policy.tables() {
        created += ensure(
            pool,
            t.table,
            now,
            now + Duration::days(i64::from(policy.ahead_days)),
            t.chunk_days,
        )
        .await?;
    }
    Ok(created)
}

/// Partitions for the time ranges of a batch's samples and reports (the write path's safety
/// net when one is missing).
pub(super) async fn ensure_partitions_for(
    pool: &PgPool,
    samples: Option<(DateTime<Utc>, DateTime<Utc>)>,
    reports: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> Result<(), StoreError> {
    let policy = read_policy(pool).await?;
    if let Some((from, to)) = samples {
        ensure(pool, "samples", from, to, policy.chunk_days).await?;
    }
    if let Some((from, to)) = reports {
        for table in ["dtc_reports", "dtc_events"] {
            ensure(pool, table, from, to, policy.dtc_chunk_days).await?;
        }
    }
    Ok(())
}

/// Partitions for a bulk load's time range, on any flavour (a no-op on TimescaleDB).
pub async fn ensure_partitions_between(
    pool: &PgPool,
    flavor: Flavor,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(), StoreError> {
    if flavor == Flavor::Plain {
        ensure_partitions_for(pool, Some((from, to)), Some((from, to))).await?;
    }
    Ok(())
}

async fn ensure(
    pool: &PgPool,
    table: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    chunk_days: i32,
) -> Result<u32, StoreError> {
    let mut conn = pool.acquire().await?;
    ensure_on(&mut conn, table, from, to, chunk_days).await
}

/// `ensure` on a connection the caller holds.
pub(super) async fn ensure_on(
    conn: &mut sqlx::PgConnection,
    table: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    chunk_days: i32,
) -> Result<u32, StoreError> {
    // One maker at a time per table, and not for long behind a long query on the parent.
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('aftercare.partitions.' || $1))")
        .bind(table)
        .execute(&mut *tx)
        .await?;
    sqlx::query("SET LOCAL lock_timeout = '10s'")
        .execute(&mut *tx)
        .await?;
    let created: i32 = sqlx::query_scalar(
        "SELECT aftercare_ensure_partitions($1, $2, $3, make_interval(days => $4))",
    )
    .bind(table)
    .bind(from)
    .bind(to)
    .bind(chunk_days)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(created.max(0) as u32)
}

/// What one maintenance round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Maintenance {
    pub partitions_created: u32,
    /// Partitions (plain) or chunks (TimescaleDB, apache licence) dropped past retention.
    pub partitions_dropped: u32,
    pub rollup_rows_deleted: u64,
    pub dead_letters_deleted: u64,
}

/// One round: partitions ahead, old partitions or chunks dropped, old rollup days and dead
/// letters deleted. Several instances may run it; they take turns.
pub async fn maintain(
    pool: &PgPool,
    flavor: Flavor,
    now: DateTime<Utc>,
) -> Result<Maintenance, StoreError> {
    let policy = read_policy(pool).await?;
    let mut done = Maintenance {
        partitions_created: ensure_partitions(pool, flavor, now).await?,
        ..Maintenance::default()
    };
    for t in policy.tables() {
        let cutoff = now - Duration::days(i64::from(t.retention_days));
        done.partitions_dropped += match flavor {
            Flavor::Plain => {
                let mut tx = pool.begin().await?;
                sqlx::query("SET LOCAL lock_timeout = '10s'")
                    .execute(&mut *tx)
                    .await?;
                let n: i32 = sqlx::query_scalar("SELECT aftercare_drop_partitions($1, $2)")
                    .bind(t.table)
                    .bind(cutoff)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                n.max(0) as u32
            }
            // TimescaleDB's retention policy does it with the Timescale licence.
            Flavor::Timescale { tsl: true } => 0,
            Flavor::Timescale { tsl: false } => {
                let dropped: Vec<String> = sqlx::query_scalar(
                    "SELECT drop_chunks($1::regclass, older_than => $2::timestamptz)::text",
                )
                .bind(t.table)
                .bind(cutoff)
                .fetch_all(pool)
                .await?;
                dropped.len() as u32
            }
        };
    }
    let rollup_cutoff = now - Duration::days(i64::from(policy.retention_days));
    done.rollup_rows_deleted = delete_in_batches(
        pool,
        "DELETE FROM signal_daily WHERE ctid = ANY (ARRAY (
             SELECT ctid FROM signal_daily WHERE day < $1 LIMIT 10000))",
        rollup_cutoff,
    )
    .await?;
    done.dead_letters_deleted = delete_in_batches(
        pool,
        "DELETE FROM dead_letters WHERE id = ANY (ARRAY (
             SELECT id FROM dead_letters WHERE last_received < $1 LIMIT 10000))",
        now - Duration::days(i64::from(policy.dead_letter_retention_days)),
    )
    .await?;
    Ok(done)
}

async fn delete_in_batches(
    pool: &PgPool,
    statement: &str,
    cutoff: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = sqlx::query(statement)
            .bind(cutoff)
            .execute(pool)
            .await?
            .rows_affected();
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}

/// A TimescaleDB background job of the service's tables, as `job_stats` reports it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct JobHealth {
    pub job_id: i32,
    pub proc_name: String,
    pub hypertable: String,
    pub last_run_status: Option<String>,
    pub last_successful_finish: Option<DateTime<Utc>>,
    pub total_runs: Option<i64>,
    pub total_failures: Option<i64>,
    pub next_start: Option<DateTime<Utc>>,
    /// When the job was created, roughly: it has not had a chance to run before.
    pub scheduled_since: Option<DateTime<Utc>>,
}

impl JobHealth {
    /// Why this job needs an operator, if it does: it failed last, or it has not succeeded
    /// for longer than `stale_after` (counted from its creation if it never did).
    pub fn problem(&self, now: DateTime<Utc>, stale_after: Duration) -> Option<String> {
        let what = format!("{} on {}", self.proc_name, self.hypertable);
        if self.last_run_status.as_deref() == Some("Failed") {
            return Some(format!(
                "{what}: last run failed ({} failures in all)",
                self.total_failures.unwrap_or(0)
            ));
        }
        let since = self.last_successful_finish.or(self.scheduled_since)?;
        (now - since > stale_after).then(|| {
            format!(
                "{what}: no successful run for {} hours",
                (now - since).num_hours()
            )
        })
    }
}

/// The compression and retention jobs on the service's tables (TimescaleDB with the
/// Timescale licence; empty otherwise).
pub async fn job_health(pool: &PgPool, flavor: Flavor) -> Result<Vec<JobHealth>, StoreError> {
    if flavor != (Flavor::Timescale { tsl: true }) {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(
        "SELECT j.job_id, j.proc_name::text, coalesce(j.hypertable_name::text, '') AS hypertable,
                s.last_run_status::text, s.last_successful_finish, s.total_runs,
                s.total_failures, s.next_start,
                (SELECT min(p.updated_at) FROM storage_policy p) AS scheduled_since
         FROM timescaledb_information.jobs j
         LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
         WHERE j.proc_name IN ('policy_compression', 'policy_retention')
           AND j.hypertable_name IN ('samples', 'dtc_reports', 'dtc_events')
         ORDER BY j.job_id",
    )
    .fetch_all(pool)
    .await?)
}

/// Runs maintenance every `every` until `shutdown`, publishing what it did and the health of
/// TimescaleDB's jobs as metrics, and what needs an operator as the storage readiness detail.
pub async fn run(
    pool: PgPool,
    flavor: Flavor,
    every: std::time::Duration,
    stale_after: Duration,
    metrics: Arc<Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let started = Utc::now().timestamp();
    loop {
        let now = Utc::now();
        let mut problems = Vec::new();
        match maintain(&pool, flavor, now).await {
            Ok(done) => {
                metrics.storage_maintenance_ok.set(now.timestamp());
                metrics
                    .storage_partitions_created
                    .inc_by(u64::from(done.partitions_created));
                metrics
                    .storage_partitions_dropped
                    .inc_by(u64::from(done.partitions_dropped));
                for (table, n) in [
                    ("signal_daily", done.rollup_rows_deleted),
                    ("dead_letters", done.dead_letters_deleted),
                ] {
                    metrics
                        .storage_rows_expired
                        .get_or_create(&TableLabel { table })
                        .inc_by(n);
                }
                if done != Maintenance::default() {
                    tracing::info!(?done, "storage maintenance");
                }
            }
            Err(e) => tracing::warn!(error = %e, "storage maintenance failed; retrying later"),
        }
        let last_ok = metrics.storage_maintenance_ok.get().max(started);
        if now.timestamp() - last_ok > stale_after.num_seconds() {
            problems.push(format!(
                "storage maintenance has not succeeded for {} hours",
                (now.timestamp() - last_ok) / 3600
            ));
        }
        match job_health(&pool, flavor).await {
            Ok(jobs) => {
                for j in &jobs {
                    let label = JobLabel {
                        job: format!("{}/{}", j.proc_name, j.hypertable),
                    };
                    metrics
                        .timescaledb_job_last_success
                        .get_or_create(&label)
                        .set(j.last_successful_finish.map_or(0, |t| t.timestamp()));
                    metrics
                        .timescaledb_job_failures
                        .get_or_create(&label)
                        .set(j.total_failures.unwrap_or(0));
                    metrics
                        .timescaledb_job_next_start
                        .get_or_create(&label)
                        .set(j.next_start.map_or(0, |t| t.timestamp()));
                    problems.extend(j.problem(now, stale_after));
                }
            }
            Err(e) => problems.push(format!("cannot read TimescaleDB job stats: {e}")),
        }
        metrics.set_storage_problems(problems);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(now: DateTime<Utc>, status: Option<&str>, last_ok_hours_ago: Option<i64>) -> JobHealth {
        JobHealth {
            job_id: 1000,
            proc_name: "policy_compression".into(),
            hypertable: "samples".into(),
            last_run_status: status.map(str::to_owned),
            last_successful_finish: last_ok_hours_ago.map(|h| now - Duration::hours(h)),
            total_runs: Some(3),
            total_failures: Some(1),
            next_start: None,
            scheduled_since: Some(now - Duration::hours(100)),
        }
    }

    #[test]
    fn a_failed_or_stale_job_is_a_problem() {
        let now = Utc::now();
        let stale = Duration::hours(48);
        assert_eq!(job(now, Some("Success"), Some(1)).problem(now, stale), None);
        assert!(job(now, Some("Failed"), Some(1))
            .problem(now, stale)
            .is_some_and(|p| p.contains("last run failed")));
        assert!(job(now, Some("Success"), Some(72))
            .problem(now, stale)
            .is_some_and(|p| p.contains("no successful run for 72 hours")));
        // Never succeeded: counted from when it was scheduled.
        assert!(job(now, None, None).problem(now, stale).is_some());
        let mut young = job(now, None, None);
        young.scheduled_since = Some(now - Duration::hours(1));
        assert_eq!(young.problem(now, stale), None);
    }
}
