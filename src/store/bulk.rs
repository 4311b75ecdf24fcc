//! Writing history in bulk (the simulator's bulk mode): rebuilding the plain-PostgreSQL daily
//! rollup for whole vehicles in one pass, instead of the refresh worker's day-by-day
//! recomputation, which is made for a trickle of new days, not years of them at once.

use super::{Store, StoreError};

/// Vehicles per rebuild transaction.
const VEHICLES_PER_PASS: usize = 250;

impl Store {
    /// Ids of these VINs (unknown ones are skipped).
    pub async fn vehicle_ids(&self, vins: &[String]) -> Result<Vec<i32>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM vehicles WHERE vin = ANY($1) ORDER BY id")
                .bind(vins)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Recomputes `signal_daily` for these vehicles from their raw values and drops their
    /// dirty marks, on two connections at once. Meant for vehicles nothing else is writing to
    /// at the same time (a bulk load): a mark set by a concurrent writer could be dropped
    /// before its day is counted. Does nothing where the continuous aggregate maintains the
    /// rollup.
    pub async fn rebuild_rollup(&self, vehicle_ids: &[i32]) -> Result<(), StoreError> {
        if !self.flavor.writes_rollup() {
            return Ok(());
        }
        let (even, odd): (Vec<_>, Vec<_>) = vehicle_ids
            .chunks(VEHICLES_PER_PASS)
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        tokio::try_join!(
            self.rebuild_rollup_passes(even),
            self.rebuild_rollup_passes(odd)
        )?;
        Ok(())
    }

    async fn rebuild_rollup_passes(&self, passes: Vec<(usize, &[i32])>) -> Result<(), StoreError> {
        for (_, vehicle_ids) in passes {
            self.rebuild_rollup_pass(vehicle_ids).await?;
        }
        Ok(())
    }

    async fn rebuild_rollup_pass(&self, vehicle_ids: &[i32]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Enough to aggregate a pass in memory rather than spilling to disk.
        sqlx::query("SET LOCAL work_mem = '256MB'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM signal_daily WHERE vehicle_id = ANY($1)")
            .bind(vehicle_ids)
            .execute(&mut *tx)
            .await?;
        // In key order: index insertion in order measured 2.4 times faster than hash order.
        sqlx::query(
            "INSERT INTO signal_daily (vehicle_id, signal_id, day, n, min, max, sum, sumsq)
             SELECT vehicle_id, signal_id, date_trunc('day', ts, 'UTC'), count(*),
                    min(value), max(value), sum(value), sum(value * value)
             FROM telemetry WHERE vehicle_id = ANY($1)
             GROUP BY 1, 2, 3
             ORDER BY 1, 2, 3",
        )
        .bind(vehicle_ids)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM rollup_dirty WHERE vehicle_id = ANY($1)")
            .bind(vehicle_ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
