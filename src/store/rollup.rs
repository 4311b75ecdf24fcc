//! The daily rollup `signal_daily` where this service maintains it (plain PostgreSQL, or
//! TimescaleDB without its continuous aggregates). Each batch transaction appends one delta
//! row: n, min, max, sum and sum of squares per (vehicle, signal, day) of the values it newly
//! stored. The ledger already decided exactly-once, so adding deltas up is exact (sums up to
//! floating-point rounding order). A fold takes deltas as a work queue (`FOR UPDATE SKIP
//! LOCKED`), deletes them and adds them into `signal_daily` in the same statement, so a crash
//! folds nothing twice and several instances can fold at once. With the Timescale-licensed
//! build the continuous aggregate does this job instead.

use super::telemetry::ValueRow;
use super::{Store, StoreError};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::PgConnection;

/// One batch's contribution to `signal_daily`, as parallel arrays in key order.
#[derive(Debug, Default, PartialEq)]
pub(super) struct RollupDelta {
    vehicle_id: Vec<i32>,
    signal_id: Vec<i32>,
    day: Vec<DateTime<Utc>>,
    n: Vec<i32>,
    min: Vec<f64>,
    max: Vec<f64>,
    sum: Vec<f64>,
    sumsq: Vec<f64>,
}

impl RollupDelta {
    /// Aggregates values sorted by (vehicle, signal, ts) in one pass.
    pub(super) fn from_sorted(rows: &[ValueRow]) -> RollupDelta {
        let mut d = RollupDelta::default();
        for r in rows {
            let day = r.ts.duration_trunc(TimeDelta::days(1)).unwrap_or(r.ts);
            let last = d.n.len().wrapping_sub(1);
            let same_key = !d.n.is_empty()
                && d.vehicle_id[last] == r.vehicle_id
                && d.signal_id[last] == r.signal_id
                && d.day[last] == day;
            if same_key {
                d.n[last] += 1;
                d.min[last] = d.min[last].min(r.value);
                d.max[last] = d.max[last].max(r.value);
                d.sum[last] += r.value;
                d.sumsq[last] += r.value * r.value;
            } else {
                d.vehicle_id.push(r.vehicle_id);
                d.signal_id.push(r.signal_id);
                d.day.push(day);
                d.n.push(1);
                d.min.push(r.value);
                d.max.push(r.value);
                d.sum.push(r.value);
                d.sumsq.push(r.value * r.value);
            }
        }
        d
    }

    /// Appends the delta as one row: no index but its id, no lock anyone waits on.
    pub(super) async fn insert(&self, tx: &mut PgConnection) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO rollup_delta (vehicle_id, signal_id, day, n, min, max, sum, sumsq)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&self.vehicle_id)
        .bind(&self.signal_id)
        .bind(&self.day)
        .bind(&self.n)
        .bind(&self.min)
        .bind(&self.max)
        .bind(&self.sum)
        .bind(&self.sumsq)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

impl Store {
    /// Folds up to `limit` deltas (oldest first) into `signal_daily`; returns how many. One
    /// statement: the deltas are deleted in the transaction that adds them, and rows are
    /// upserted in key order so concurrent folds lock them in one order.
    pub async fn fold_rollup(&self, limit: i64) -> Result<u64, StoreError> {
        let (folded,): (i64,) = sqlx::query_as(
            "WITH taken AS (
                 DELETE FROM rollup_delta WHERE id IN (
                     SELECT id FROM rollup_delta ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
                 RETURNING vehicle_id, signal_id, day, n, min, max, sum, sumsq
             ), vals AS (
                 SELECT u.* FROM taken,
                     UNNEST(taken.vehicle_id, taken.signal_id, taken.day, taken.n,
                            taken.min, taken.max, taken.sum, taken.sumsq)
                     AS u(vehicle_id, signal_id, day, n, min, max, sum, sumsq)
             ), added AS (
                 INSERT INTO signal_daily AS d (vehicle_id, signal_id, day, n, min, max, sum, sumsq)
                 SELECT vehicle_id, signal_id, day, sum(n), min(min), max(max), sum(sum), sum(sumsq)
                 FROM vals
                 GROUP BY vehicle_id, signal_id, day
                 ORDER BY vehicle_id, signal_id, day
                 ON CONFLICT (vehicle_id, signal_id, day) DO UPDATE SET
                     n = d.n + excluded.n,
                     min = LEAST(d.min, excluded.min),
                     max = GREATEST(d.max, excluded.max),
                     sum = d.sum + excluded.sum,
                     sumsq = d.sumsq + excluded.sumsq
             )
             SELECT count(*) FROM taken",
        )
        .bind(limit)
        .fetch_one(&self.pool)
        .await?;
        Ok(folded as u64)
    }

    /// Folds until no delta is left (tests, and before reading the rollup in a batch job).
    pub async fn fold_rollup_all(&self) -> Result<u64, StoreError> {
        if !self.flavor.writes_rollup() {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let n = self.fold_rollup(100).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn row(vehicle_id: i32, signal_id: i32, ts: &str, value: f64) -> ValueRow {
        ValueRow {
            vehicle_id,
            signal_id,
            ts: at(ts),
            value,
        }
    }

    #[test]
    fn delta_aggregates_per_vehicle_signal_and_utc_day() {
        let rows = [
            row(1, 1, "2026-01-01T10:00:00Z", 2.0),
            row(1, 1, "2026-01-01T23:59:59Z", -1.0),
            row(1, 1, "2026-01-02T00:00:00Z", 5.0),
            row(1, 2, "2026-01-02T01:00:00Z", 3.0),
            row(2, 1, "2026-01-02T01:00:00Z", 4.0),
            row(2, 1, "2026-01-02T02:00:00Z", 6.0),
        ];
        let d = RollupDelta::from_sorted(&rows);
        assert_eq!(d.vehicle_id, [1, 1, 1, 2]);
        assert_eq!(d.signal_id, [1, 1, 2, 1]);
        assert_eq!(
            d.day,
            [
                at("2026-01-01T00:00:00Z"),
                at("2026-01-02T00:00:00Z"),
                at("2026-01-02T00:00:00Z"),
                at("2026-01-02T00:00:00Z")
            ]
        );
        assert_eq!(d.n, [2, 1, 1, 2]);
        assert_eq!(d.min, [-1.0, 5.0, 3.0, 4.0]);
        assert_eq!(d.max, [2.0, 5.0, 3.0, 6.0]);
        assert_eq!(d.sum, [1.0, 5.0, 3.0, 10.0]);
        assert_eq!(d.sumsq, [5.0, 25.0, 9.0, 52.0]);
    }

    #[test]
    fn empty_input_gives_an_empty_delta() {
        assert_eq!(RollupDelta::from_sorted(&[]), RollupDelta::default());
    }
}
