//! The move from storage layout 1 (a narrow `telemetry` table with a row per value, beside the
//! `samples` ledger) to layout 2 (a row per sample, its values as arrays) on a live database.
//! Migration 30 renamed the old tables `telemetry_v1` and `samples_v1`; this moves their rows
//! one vehicle and a bounded window of time per transaction, which inserts the new rows and
//! deletes the old ones, so it can stop at any point and resume, and readers (the
//! `all_samples` view) see every value exactly once throughout. Ingest keeps running: the
//! writer counts a key of the old ledger as taken. When nothing is left, the view is redefined
//! over the new table alone and the old tables are dropped.
//!
//! Old rows become samples like this: the ledger row with the lowest `seq` at an instant gets
//! that instant's values (layout 1 kept one value per signal and instant, so a second sample at
//! the same instant had lost its values already); other ledger rows at that instant keep their
//! key with no values; values without a ledger row (written by hand) get `seq` -1.

use super::StoreError;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::collections::BTreeMap;

/// Samples moved per transaction, at most (all of an instant's rows go together).
pub const WINDOW_SAMPLES: i64 = 5_000;

pub async fn legacy_present(pool: &PgPool) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT to_regclass('samples_v1') IS NOT NULL OR to_regclass('telemetry_v1') IS NOT NULL",
    )
    .fetch_one(pool)
    .await?)
}

/// When the old tables are empty (a fresh database, or the move is done): redefines the
/// readers' view over the new table alone and drops them. Returns whether the layout is (now)
/// the new one alone.
pub async fn finish_if_empty(pool: &PgPool) -> Result<bool, StoreError> {
    if !legacy_present(pool).await? {
        return Ok(true);
    }
    let mut tx = pool.begin().await?;
    // No writer of the old tables exists any more; readers wait for this short transaction.
    sqlx::query("LOCK TABLE samples_v1, telemetry_v1 IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let empty: bool = sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM samples_v1) AND NOT EXISTS (SELECT 1 FROM telemetry_v1)",
    )
    .fetch_one(&mut *tx)
    .await?;
    if !empty {
        return Ok(false);
    }
    for statement in [
        "CREATE OR REPLACE VIEW all_samples AS
             SELECT vehicle_id, ts, seq, signal_ids, signal_values FROM samples",
        "DROP TABLE telemetry_v1",
        "DROP TABLE samples_v1",
    ] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    tracing::info!("storage layout 2 complete: the old sample tables are dropped");
    Ok(true)
}

/// What one step of the move did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub samples: u64,
    pub values: u64,
    /// Nothing was left to move (the old tables may now be dropped).
    pub done: bool,
}

/// Moves one window of one vehicle's old rows, on `conn`. Only the mover changes the old
/// tables (one at a time, under its lock), so they are read before the moving transaction.
pub async fn move_window(conn: &mut PgConnection) -> Result<Moved, StoreError> {
    let present: bool = sqlx::query_scalar(
        "SELECT to_regclass('samples_v1') IS NOT NULL AND to_regclass('telemetry_v1') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    let done = Moved {
        done: true,
        ..Moved::default()
    };
    if !present {
        return Ok(done);
    }
    let vehicle: Option<i32> = sqlx::query_scalar(
        "SELECT coalesce((SELECT min(vehicle_id) FROM samples_v1),
                         (SELECT min(vehicle_id) FROM telemetry_v1))",
    )
    .fetch_one(&mut *conn)
    .await?;
    let Some(vehicle) = vehicle else {
        return Ok(done);
    };
    // The ledger rows of the window: the vehicle's earliest WINDOW_SAMPLES, and every row at
    // the last instant among them.
    let ledger: Vec<(i64, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "WITH w AS (SELECT max(ts) AS hi FROM (
                        SELECT ts FROM samples_v1 WHERE vehicle_id = $1
                        ORDER BY ts LIMIT $2) f)
         SELECT l.seq, l.ts, l.received_at FROM samples_v1 l, w
         WHERE l.vehicle_id = $1 AND l.ts <= w.hi
         ORDER BY l.ts, l.seq",
    )
    .bind(vehicle)
    .bind(WINDOW_SAMPLES)
    .fetch_all(&mut *conn)
    .await?;
    // Values up to the window's end; without ledger rows left, all the vehicle's values.
    let until: Option<DateTime<Utc>> = ledger.last().map(|l| l.1);
    let signal_ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM signals ORDER BY id")
        .fetch_all(&mut *conn)
        .await?;
    let values: Vec<(i32, DateTime<Utc>, f64)> = sqlx::query_as(
        "SELECT signal_id, ts, value FROM telemetry_v1
         WHERE vehicle_id = $1 AND signal_id = ANY($2) AND ($3::timestamptz IS NULL OR ts <= $3)",
    )
    .bind(vehicle)
    .bind(&signal_ids)
    .bind(until)
    .fetch_all(&mut *conn)
    .await?;
    let rows = assemble(&ledger, &values);
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        if super::Flavor::detect_on(conn).await? == super::Flavor::Plain {
            let chunk_days: i32 = sqlx::query_scalar("SELECT chunk_days FROM storage_policy")
                .fetch_one(&mut *conn)
                .await?;
            super::retention::ensure_on(conn, "samples", first.ts, last.ts, chunk_days).await?;
        }
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let mut moved = Moved::default();
    for chunk in rows.chunks(2_000) {
        let (mut ts, mut seq, mut recv, mut offset, mut len) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut ids, mut vals) = (vec![], vec![]);
        for r in chunk {
            ts.push(r.ts);
            seq.push(r.seq);
            recv.push(r.received_at);
            offset.push(ids.len() as i32);
            len.push(r.signal_ids.len() as i32);
            ids.extend_from_slice(&r.signal_ids);
            vals.extend_from_slice(&r.values);
        }
        moved.samples += chunk.len() as u64;
        moved.values += vals.len() as u64;
        sqlx::query(
            "INSERT INTO samples (vehicle_id, ts, seq, received_at, signal_ids, signal_values)
             SELECT $1, k.t, k.s, k.r,
                    ($7::int4[])[k.o + 1 : k.o + k.n], ($8::float8[])[k.o + 1 : k.o + k.n]
             FROM UNNEST($2::timestamptz[], $3::int8[], $4::timestamptz[], $5::int4[],
                         $6::int4[]) AS k (t, s, r, o, n)
             ORDER BY k.t, k.s
             ON CONFLICT DO NOTHING",
        )
        .bind(vehicle)
        .bind(ts)
        .bind(seq)
        .bind(recv)
        .bind(offset)
        .bind(len)
        .bind(ids)
        .bind(vals)
        .execute(&mut *tx)
        .await?;
    }
    // Signals the rollup had not folded when migration 30 listed them.
    sqlx::query(
        "INSERT INTO vehicle_signals (vehicle_id, signal_id)
         SELECT DISTINCT $1::int4, s FROM UNNEST($2::int4[]) AS s
         ON CONFLICT DO NOTHING",
    )
    .bind(vehicle)
    .bind(values.iter().map(|v| v.0).collect::<Vec<i32>>())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM samples_v1 l USING UNNEST($2::int8[], $3::timestamptz[]) AS k (s, t)
         WHERE l.vehicle_id = $1 AND l.seq = k.s AND l.ts = k.t",
    )
    .bind(vehicle)
    .bind(ledger.iter().map(|l| l.0).collect::<Vec<i64>>())
    .bind(ledger.iter().map(|l| l.1).collect::<Vec<DateTime<Utc>>>())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM telemetry_v1
         WHERE vehicle_id = $1 AND signal_id = ANY($2) AND ($3::timestamptz IS NULL OR ts <= $3)",
    )
    .bind(vehicle)
    .bind(&signal_ids)
    .bind(until)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(moved)
}

/// A sample row rebuilt from old rows.
#[derive(Debug, Clone, PartialEq)]
struct Rebuilt {
    ts: DateTime<Utc>,
    seq: i64,
    received_at: DateTime<Utc>,
    signal_ids: Vec<i32>,
    values: Vec<f64>,
}

/// Sample rows from ledger rows (seq, ts, received_at; ordered by ts, seq) and values
/// (signal, ts, value), by the rules in the module comment. Ordered by (ts, seq).
fn assemble(
    ledger: &[(i64, DateTime<Utc>, DateTime<Utc>)],
    values: &[(i32, DateTime<Utc>, f64)],
) -> Vec<Rebuilt> {
    let mut at: BTreeMap<DateTime<Utc>, Vec<(i32, f64)>> = BTreeMap::new();
    for &(signal_id, ts, value) in values {
        at.entry(ts).or_default().push((signal_id, value));
    }
    let mut rows = Vec::with_capacity(ledger.len() + at.len());
    let mut last_ts = None;
    for &(seq, ts, received_at) in ledger {
        let first_at_instant = last_ts != Some(ts);
        last_ts = Some(ts);
        let mut pairs = if first_at_instant {
            at.remove(&ts).unwrap_or_default()
        } else {
            Vec::new()
        };
        pairs.sort_unstable_by_key(|p| p.0);
        let (signal_ids, values) = pairs.into_iter().unzip();
        rows.push(Rebuilt {
            ts,
            seq,
            received_at,
            signal_ids,
            values,
        });
    }
    for (ts, mut pairs) in at {
        pairs.sort_unstable_by_key(|p| p.0);
        let (signal_ids, values) = pairs.into_iter().unzip();
        rows.push(Rebuilt {
            ts,
            seq: -1,
            received_at: ts,
            signal_ids,
            values,
        });
    }
    rows.sort_by_key(|r| (r.ts, r.seq));
    rows
}

/// Moves everything left, `pause` between windows, then finishes the layout, logging progress.
/// One mover runs at a time across instances (the others return at once with `false`), and it
/// stops early (`false`) when `stop` turns true.
pub async fn move_all(
    pool: &PgPool,
    pause: std::time::Duration,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<bool, StoreError> {
    let mut conn = pool.acquire().await?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('aftercare.relayout'))")
            .fetch_one(&mut *conn)
            .await?;
    if !locked {
        return Ok(false);
    }
    let result = move_until_done(&mut conn, pause, stop).await;
    sqlx::query("SELECT pg_advisory_unlock(hashtext('aftercare.relayout'))")
        .execute(&mut *conn)
        .await?;
    drop(conn);
    match result {
        Ok(true) => finish_if_empty(pool).await,
        other => other,
    }
}

/// Moves windows until none is left (`true`) or `stop` (`false`).
async fn move_until_done(
    conn: &mut PgConnection,
    pause: std::time::Duration,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<bool, StoreError> {
    let mut total = Moved::default();
    loop {
        if *stop.borrow() {
            return Ok(false);
        }
        let moved = move_window(conn).await?;
        if (total.samples + moved.samples) / 100_000 > total.samples / 100_000 || moved.done {
            tracing::info!(
                samples = total.samples + moved.samples,
                values = total.values + moved.values,
                "layout migration: old rows moved"
            );
        }
        total.samples += moved.samples;
        total.values += moved.values;
        if moved.done {
            return Ok(true);
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// The service's background mover: moves the old rows while the service runs, pausing
/// `pause` between windows so it never crowds out ingest, and retrying after errors.
pub async fn run(
    pool: PgPool,
    pause: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match move_all(&pool, pause, &shutdown).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "layout migration step failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn old_rows_become_samples_by_the_rules() {
        let (t1, t2, t3) = (
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T00:01:00Z"),
            at("2026-01-01T00:02:00Z"),
        );
        let recv = at("2026-01-02T00:00:00Z");
        // Two samples at t1 (the second's values were lost in layout 1), one at t2; a value
        // at t3 without a ledger row.
        let ledger = [(4, t1, recv), (9, t1, recv), (5, t2, recv)];
        let values = [(2, t1, 20.0), (1, t1, 10.0), (1, t2, 11.0), (1, t3, 12.0)];
        let rows = assemble(&ledger, &values);
        assert_eq!(
            rows.iter()
                .map(|r| (r.ts, r.seq, r.signal_ids.clone(), r.values.clone()))
                .collect::<Vec<_>>(),
            vec![
                (t1, 4, vec![1, 2], vec![10.0, 20.0]),
                (t1, 9, vec![], vec![]),
                (t2, 5, vec![1], vec![11.0]),
                (t3, -1, vec![1], vec![12.0]),
            ]
        );
        assert_eq!(rows[3].received_at, t3);
    }
}
