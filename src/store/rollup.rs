//! The daily rollup `signal_daily`, maintained by the service on every flavour. Each batch
//! transaction appends one delta row: n, min, max, sum and sum of squares per (vehicle, signal,
//! day) of the values it newly stored. The sample table's key already decided exactly-once, so
//! adding deltas up is exact (sums up to floating-point rounding order). A fold takes deltas as
//! a work queue (`FOR UPDATE SKIP LOCKED`), deletes them and adds them into `signal_daily` in
//! one transaction, so a crash folds nothing twice and several instances can fold at once.
//! (TimescaleDB's continuous aggregate did this job on the licensed build until the values
//! became arrays: it would have to unnest them.)
//!
//! A delta is one `bytea` in a compact format, because it is written on the ingest hot path
//! (about half as many entries as the batch has values): it costs the batch one small row
//! instead of thousands, and the server parses nothing.

use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use sqlx::{Acquire, PgConnection, PgPool};
use std::collections::{BTreeMap, HashMap};

/// Format of a delta: this byte, then entries of (vehicle_id i32, signal_id i32, day i32 in
/// days since 1970-01-01, n u32), followed by the value when n is 1 and by min, max, sum and
/// sumsq (f64) otherwise; all little-endian.
const DELTA_FORMAT: u8 = 1;

/// n, min, max, sum and sum of squares of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Agg {
    pub n: u32,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub sumsq: f64,
}

impl Agg {
    fn of(x: f64) -> Agg {
        Agg {
            n: 1,
            min: x,
            max: x,
            sum: x,
            sumsq: x * x,
        }
    }

    fn add(&mut self, o: &Agg) {
        self.n += o.n;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.sumsq += o.sumsq;
    }
}

/// (vehicle, signal, day in days since 1970-01-01).
type DeltaKey = (i32, i32, i32);

/// One batch's contribution to `signal_daily`, in key order.
#[derive(Debug, Default, PartialEq)]
pub(super) struct RollupDelta {
    entries: Vec<(DeltaKey, Agg)>,
}

fn day_number(ts: DateTime<Utc>) -> i32 {
    ts.timestamp().div_euclid(86_400) as i32
}

/// Adds up the values of samples, in any order, into a delta.
#[derive(Default)]
pub(super) struct DeltaBuilder {
    sums: HashMap<DeltaKey, Agg, foldhash::fast::RandomState>,
}

impl DeltaBuilder {
    /// One sample's values (`signal_ids[i]` has `values[i]`).
    pub(super) fn add(
        &mut self,
        vehicle_id: i32,
        ts: DateTime<Utc>,
        signal_ids: &[i32],
        values: &[f64],
    ) {
        let day = day_number(ts);
        for (&signal_id, &x) in signal_ids.iter().zip(values) {
            self.sums
                .entry((vehicle_id, signal_id, day))
                .and_modify(|a| a.add(&Agg::of(x)))
                .or_insert_with(|| Agg::of(x));
        }
    }

    pub(super) fn finish(self) -> RollupDelta {
        let mut entries: Vec<(DeltaKey, Agg)> = self.sums.into_iter().collect();
        entries.sort_unstable_by_key(|(k, _)| *k);
        RollupDelta { entries }
    }
}

impl RollupDelta {
    /// Appends the entries as `signal_daily` rows for `COPY signal_daily (vehicle_id,
    /// signal_id, day, n, min, max, sum, sumsq)`: what folding this delta alone into an empty
    /// rollup would store.
    pub(super) fn encode_daily_rows(&self, enc: &mut super::copy::CopyEncoder) {
        for ((vehicle_id, signal_id, day), a) in &self.entries {
            enc.row(8);
            enc.int4(*vehicle_id);
            enc.int4(*signal_id);
            enc.timestamptz(
                DateTime::from_timestamp(i64::from(*day) * 86_400, 0).unwrap_or_default(),
            );
            enc.int8(i64::from(a.n));
            enc.float8(a.min);
            enc.float8(a.max);
            enc.float8(a.sum);
            enc.float8(a.sumsq);
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.entries.len() * 24);
        out.push(DELTA_FORMAT);
        for ((vehicle_id, signal_id, day), a) in &self.entries {
            out.extend_from_slice(&vehicle_id.to_le_bytes());
            out.extend_from_slice(&signal_id.to_le_bytes());
            out.extend_from_slice(&day.to_le_bytes());
            out.extend_from_slice(&a.n.to_le_bytes());
            if a.n == 1 {
                out.extend_from_slice(&a.sum.to_le_bytes());
            } else {
                for x in [a.min, a.max, a.sum, a.sumsq] {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        out
    }

    /// Adds the entries of an encoded delta into `into`.
    fn decode_into(data: &[u8], into: &mut BTreeMap<DeltaKey, Agg>) -> Result<(), String> {
        let mut r = Reader(data);
        match r.take::<1>()? {
            [DELTA_FORMAT] => {}
            [v] => return Err(format!("unknown delta format {v}")),
        }
        while !r.0.is_empty() {
            let key = (
                i32::from_le_bytes(r.take()?),
                i32::from_le_bytes(r.take()?),
                i32::from_le_bytes(r.take()?),
            );
            let n = u32::from_le_bytes(r.take()?);
            let agg = match n {
                0 => return Err("entry with n = 0".into()),
                1 => Agg::of(f64::from_le_bytes(r.take()?)),
                n => Agg {
                    n,
                    min: f64::from_le_bytes(r.take()?),
                    max: f64::from_le_bytes(r.take()?),
                    sum: f64::from_le_bytes(r.take()?),
                    sumsq: f64::from_le_bytes(r.take()?),
                },
            };
            into.entry(key).and_modify(|a| a.add(&agg)).or_insert(agg);
        }
        Ok(())
    }

    /// Appends the delta as one row: no index but its id, no lock anyone waits on.
    pub(super) async fn insert(&self, tx: &mut PgConnection) -> Result<(), StoreError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        sqlx::query("INSERT INTO rollup_delta (data) VALUES ($1)")
            .bind(self.encode())
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return Err("delta ends inside an entry".into());
        };
        self.0 = rest;
        Ok(*head)
    }
}

/// Which deltas a fold takes.
#[derive(Clone, Copy)]
enum Take {
    /// The oldest ones no other fold holds (the background worker).
    Unclaimed,
    /// The oldest ones with id up to this, waiting for any another fold holds: a delta it
    /// held is gone once the lock comes free, because that fold committed.
    UpTo(i64),
}

/// Folds up to `limit` deltas (oldest first) into `signal_daily`; returns how many. The
/// deltas are deleted in the transaction that adds them, and rows are upserted in key order
/// so concurrent folds lock them in one order.
async fn fold(pool: &PgPool, limit: i64, take: Take) -> Result<u64, StoreError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let (upto, lock) = match take {
        Take::Unclaimed => (i64::MAX, "FOR UPDATE SKIP LOCKED"),
        Take::UpTo(id) => (id, "FOR UPDATE"),
    };
    let taken: Vec<(i64, Vec<u8>)> = sqlx::query_as(&format!(
        "DELETE FROM rollup_delta WHERE id IN (
             SELECT id FROM rollup_delta WHERE id <= $2 ORDER BY id LIMIT $1 {lock})
         RETURNING id, data"
    ))
    .bind(limit)
    .bind(upto)
    .fetch_all(&mut *tx)
    .await?;
    if taken.is_empty() {
        return Ok(0);
    }
    let mut sums: BTreeMap<DeltaKey, Agg> = BTreeMap::new();
    for (id, data) in &taken {
        RollupDelta::decode_into(data, &mut sums)
            .map_err(|reason| StoreError::Corrupt(format!("rollup delta {id}: {reason}")))?;
    }
    let mut c = (
        Vec::with_capacity(sums.len()),
        Vec::with_capacity(sums.len()),
        Vec::with_capacity(sums.len()),
        Vec::with_capacity(sums.len()),
        Vec::with_capacity(sums.len()),
        Vec::with_capacity(sums.len()),
        Vec::with_capacity(sums.len()),
        Vec::with_capacity(sums.len()),
    );
    for ((vehicle_id, signal_id, day), a) in sums {
        c.0.push(vehicle_id);
        c.1.push(signal_id);
        c.2.push(i64::from(day) * 86_400);
        c.3.push(i64::from(a.n));
        c.4.push(a.min);
        c.5.push(a.max);
        c.6.push(a.sum);
        c.7.push(a.sumsq);
    }
    sqlx::query(
        "INSERT INTO signal_daily AS d (vehicle_id, signal_id, day, n, min, max, sum, sumsq)
         SELECT vehicle_id, signal_id, to_timestamp(day), n, min, max, sum, sumsq
         FROM UNNEST($1::int4[], $2::int4[], $3::int8[], $4::int8[], $5::float8[],
                     $6::float8[], $7::float8[], $8::float8[])
              AS u(vehicle_id, signal_id, day, n, min, max, sum, sumsq)
         ON CONFLICT (vehicle_id, signal_id, day) DO UPDATE SET
             n = d.n + excluded.n,
             min = LEAST(d.min, excluded.min),
             max = GREATEST(d.max, excluded.max),
             sum = d.sum + excluded.sum,
             sumsq = d.sumsq + excluded.sumsq",
    )
    .bind(c.0)
    .bind(c.1)
    .bind(c.2)
    .bind(c.3)
    .bind(c.4)
    .bind(c.5)
    .bind(c.6)
    .bind(c.7)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(taken.len() as u64)
}

/// Folds every delta committed before the call, and waits for folds in flight, so that a
/// read of `signal_daily` after it sees everything ingest committed before it (the scoring
/// worker calls it after claiming marks, which commit with their deltas). Returns how many
/// deltas it folded itself. Where the rollup is a continuous aggregate there are no deltas.
pub async fn fold_committed(pool: &PgPool) -> Result<u64, StoreError> {
    let deltas: bool = sqlx::query_scalar("SELECT to_regclass('rollup_delta') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !deltas {
        return Ok(0);
    }
    // Every delta committed so far has an id up to this one; later ones are not ours to wait for.
    let Some(upto) = sqlx::query_scalar::<_, Option<i64>>("SELECT max(id) FROM rollup_delta")
        .fetch_one(pool)
        .await?
    else {
        return Ok(0);
    };
    let mut total = 0;
    loop {
        // LIMIT counts locked rows only, so a short batch means none is left up to `upto`.
        let n = fold(pool, FOLD_BATCH, Take::UpTo(upto)).await?;
        total += n;
        if n < FOLD_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Deltas folded per transaction where a fold runs to the end.
const FOLD_BATCH: i64 = 100;

impl Store {
    /// Folds up to `limit` deltas no other fold holds; returns how many (the background
    /// worker: several instances fold at once without waiting on each other).
    pub async fn fold_rollup(&self, limit: i64) -> Result<u64, StoreError> {
        fold(&self.pool, limit, Take::Unclaimed).await
    }

    /// Folds until no delta is left (tests, and before reading the rollup in a batch job).
    pub async fn fold_rollup_all(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = self.fold_rollup(FOLD_BATCH).await?;
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

    /// A delta of single-value samples (vehicle, signal, ts, value).
    fn delta(rows: &[(i32, i32, &str, f64)]) -> RollupDelta {
        let mut b = DeltaBuilder::default();
        for &(vehicle_id, signal_id, ts, x) in rows {
            b.add(vehicle_id, at(ts), &[signal_id], &[x]);
        }
        b.finish()
    }

    fn agg(n: u32, min: f64, max: f64, sum: f64, sumsq: f64) -> Agg {
        Agg {
            n,
            min,
            max,
            sum,
            sumsq,
        }
    }

    #[test]
    fn delta_aggregates_per_vehicle_signal_and_utc_day() {
        let day1 = day_number(at("2026-01-01T00:00:00Z"));
        assert_eq!(day1, 20454);
        // In any order, and with several signals in one sample.
        let mut b = DeltaBuilder::default();
        b.add(2, at("2026-01-02T02:00:00Z"), &[1], &[6.0]);
        b.add(1, at("2026-01-02T01:00:00Z"), &[2], &[3.0]);
        b.add(1, at("2026-01-01T23:59:59Z"), &[1], &[-1.0]);
        b.add(1, at("2026-01-02T00:00:00Z"), &[1], &[5.0]);
        b.add(1, at("2026-01-01T10:00:00Z"), &[1], &[2.0]);
        b.add(2, at("2026-01-02T01:00:00Z"), &[1, 9], &[4.0, 0.5]);
        let d = b.finish();
        assert_eq!(
            d.entries,
            vec![
                ((1, 1, day1), agg(2, -1.0, 2.0, 1.0, 5.0)),
                ((1, 1, day1 + 1), agg(1, 5.0, 5.0, 5.0, 25.0)),
                ((1, 2, day1 + 1), agg(1, 3.0, 3.0, 3.0, 9.0)),
                ((2, 1, day1 + 1), agg(2, 4.0, 6.0, 10.0, 52.0)),
                ((2, 9, day1 + 1), agg(1, 0.5, 0.5, 0.5, 0.25)),
            ]
        );
    }

    #[test]
    fn days_before_1970_round_down() {
        assert_eq!(day_number(at("1969-12-31T23:00:00Z")), -1);
        assert_eq!(day_number(at("1970-01-01T00:00:00Z")), 0);
    }

    #[test]
    fn encoded_deltas_decode_and_add_up() {
        let a = delta(&[
            (1, 1, "2026-01-01T10:00:00Z", 2.0),
            (1, 1, "2026-01-01T11:00:00Z", 4.0),
            (1, 2, "2026-01-01T11:00:00Z", -3.5),
        ]);
        let b = delta(&[(1, 1, "2026-01-01T12:00:00Z", 1.0)]);
        let mut sums = BTreeMap::new();
        RollupDelta::decode_into(&a.encode(), &mut sums).unwrap();
        RollupDelta::decode_into(&b.encode(), &mut sums).unwrap();
        let day = day_number(at("2026-01-01T00:00:00Z"));
        assert_eq!(sums.len(), 2);
        assert_eq!(sums[&(1, 1, day)], agg(3, 1.0, 4.0, 7.0, 21.0));
        assert_eq!(sums[&(1, 2, day)], agg(1, -3.5, -3.5, -3.5, 12.25));
    }

    #[test]
    fn malformed_deltas_are_refused() {
        let good = delta(&[(1, 1, "2026-01-01T10:00:00Z", 2.0)]).encode();
        let mut sums = BTreeMap::new();
        assert!(RollupDelta::decode_into(&good[..good.len() - 1], &mut sums).is_err());
        assert!(RollupDelta::decode_into(&[9], &mut sums).is_err());
        assert!(RollupDelta::decode_into(&[], &mut sums).is_err());
        let mut zero = good.clone();
        zero[13..17].copy_from_slice(&0u32.to_le_bytes());
        assert!(RollupDelta::decode_into(&zero, &mut sums).is_err());
    }

    #[test]
    fn empty_input_gives_an_empty_delta() {
        assert_eq!(DeltaBuilder::default().finish(), RollupDelta::default());
    }
}
