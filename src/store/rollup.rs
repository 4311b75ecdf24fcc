//! Daily rollup refresh for plain PostgreSQL: recomputes the (vehicle, day) pairs the ingest
//! writer marked dirty, from raw values. Recomputing (rather than adding increments) keeps the
//! rollup exact whatever was replayed; `FOR UPDATE SKIP LOCKED` lets instances share the work.
//! With the Timescale-licensed build the continuous aggregate does this job instead.

use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use sqlx::Acquire;

impl Store {
    /// Refreshes up to `limit` (vehicle, day) pairs marked dirty at least `settle` ago (so a
    /// day receiving data is recomputed once per `settle`, not once per batch); returns how
    /// many it did.
    pub async fn refresh_rollup(
        &self,
        limit: i64,
        settle: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let taken: Vec<(i32, DateTime<Utc>)> = sqlx::query_as(
            "DELETE FROM rollup_dirty WHERE (vehicle_id, day) IN (
                 SELECT vehicle_id, day FROM rollup_dirty
                 WHERE marked_at <= now() - make_interval(secs => $2)
                 ORDER BY vehicle_id, day
                 LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING vehicle_id, day",
        )
        .bind(limit)
        .bind(settle.as_secs_f64())
        .fetch_all(&mut *tx)
        .await?;
        if taken.is_empty() {
            return Ok(0);
        }
        let (vid, day): (Vec<i32>, Vec<DateTime<Utc>>) = taken.iter().copied().unzip();
        sqlx::query(
            "DELETE FROM signal_daily d USING UNNEST($1::int4[], $2::timestamptz[]) AS k(vehicle_id, day)
             WHERE d.vehicle_id = k.vehicle_id AND d.day = k.day",
        )
        .bind(&vid)
        .bind(&day)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO signal_daily (vehicle_id, signal_id, day, n, min, max, sum, sumsq)
             SELECT t.vehicle_id, t.signal_id, k.day, count(*), min(t.value), max(t.value),
                    sum(t.value), sum(t.value * t.value)
             FROM UNNEST($1::int4[], $2::timestamptz[]) AS k(vehicle_id, day)
             JOIN telemetry t ON t.vehicle_id = k.vehicle_id
                             AND t.ts >= k.day AND t.ts < k.day + INTERVAL '1 day'
             GROUP BY t.vehicle_id, t.signal_id, k.day",
        )
        .bind(&vid)
        .bind(&day)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(taken.len() as u64)
    }

    /// Refreshes until nothing is dirty (tests, and before reading the rollup in a batch job).
    pub async fn refresh_rollup_all(&self) -> Result<u64, StoreError> {
        if !self.flavor.writes_rollup() {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let n = self.refresh_rollup(1000, std::time::Duration::ZERO).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }
}
