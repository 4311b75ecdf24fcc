//! The telemetry half of a batch write, on the sample table: one row per sample (vehicle, ts,
//! seq, arrival, its signal ids and values as arrays), keyed by the message's identity, so the
//! row is its own ledger entry and a redelivery is one key check. Two samples of a vehicle at
//! one instant with different `seq` are two messages, and both are kept. Two ways to write:
//! - fast, for the normal case where every sample is new: rows are encoded before the
//!   transaction and go in by plain binary COPY. A key that is already taken fails the
//!   statement, and the caller redoes the batch carefully.
//! - careful: `INSERT .. ON CONFLICT DO NOTHING RETURNING`, so exactly the samples that went
//!   in are counted and rolled up.
//!
//! Rows go in sorted by key, so concurrent batches that collide on a key wait on each other in
//! one order and cannot deadlock.

use super::batch::{copy_in, BatchItem, KeySet, Outcome, SampleKey};
use super::copy::{SampleCopyEncoder, SAMPLE_COPY};
use super::rollup::{DeltaBuilder, RollupDelta};
use super::{IdMap, StoreError};
use crate::config::WriteMethod;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// One distinct sample of the batch, as its first copy carries it.
struct Row {
    received_at: DateTime<Utc>,
    /// Ascending, each with its value in `values`.
    signal_ids: Vec<i32>,
    values: Vec<f64>,
}

/// The table's key order: (vehicle, ts, seq).
type RowKey = (i32, DateTime<Utc>, i64);

fn row_key((vehicle_id, seq, ts): SampleKey) -> RowKey {
    (vehicle_id, ts, seq)
}

fn sample_key((vehicle_id, ts, seq): RowKey) -> SampleKey {
    (vehicle_id, seq, ts)
}

/// What a set of new sample keys makes of the batch's telemetry messages.
#[derive(Debug, Default)]
pub(super) struct Claim {
    /// (item index, outcome) for every telemetry message.
    pub outcomes: Vec<(usize, Outcome)>,
    pub samples: u64,
    pub values: u64,
    /// Vehicles with at least one new sample.
    pub vehicles: BTreeSet<i32>,
    /// The new samples' contribution to the daily rollup.
    pub delta: RollupDelta,
}

/// The batch's telemetry, prepared (outside the transaction) for the fast way.
pub(super) struct SamplesPlan {
    rows: BTreeMap<RowKey, Row>,
    /// Every telemetry message: its item index and the keys of its samples.
    messages: Vec<(usize, Vec<SampleKey>)>,
    /// What the batch stores if every key is new.
    pub all_new: Claim,
    copy: Vec<u8>,
}

impl SamplesPlan {
    pub(super) fn new(items: &[BatchItem], vehicle_ids: &IdMap, signal_ids: &IdMap) -> SamplesPlan {
        let mut rows: BTreeMap<RowKey, Row> = BTreeMap::new();
        let mut messages = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let BatchItem::Message {
                message,
                received_at,
            } = item
            else {
                continue;
            };
            let (vin, Some(samples)) = (message.vin(), message.samples()) else {
                continue;
            };
            let vehicle_id = vehicle_ids[vin.as_str()];
            let mut keys = Vec::with_capacity(samples.len());
            for s in samples {
                let key = (vehicle_id, s.seq, s.ts);
                keys.push(key);
                // The first copy of a key in the batch is the one stored.
                if let Entry::Vacant(slot) = rows.entry(row_key(key)) {
                    let mut pairs: Vec<(i32, f64)> = s
                        .values
                        .iter()
                        .map(|(name, x)| (signal_ids[name.as_str()], *x))
                        .collect();
                    pairs.sort_unstable_by_key(|p| p.0);
                    let (signal_ids, values) = pairs.into_iter().unzip();
                    slot.insert(Row {
                        received_at: *received_at,
                        signal_ids,
                        values,
                    });
                }
            }
            messages.push((i, keys));
        }
        let mut plan = SamplesPlan {
            messages,
            all_new: Claim::default(),
            copy: Vec::new(),
            rows,
        };
        plan.all_new = plan.claim(plan.keys(&KeySet::default()));
        let values = plan.rows.values().map(|r| r.values.len()).sum();
        let mut enc = SampleCopyEncoder::with_capacity(plan.rows.len(), values);
        for (&(vehicle_id, ts, seq), r) in &plan.rows {
            enc.push(vehicle_id, ts, seq, r.received_at, &r.signal_ids, &r.values);
        }
        plan.copy = enc.finish();
        plan
    }

    pub(super) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The distinct sample keys, except `exclude`.
    pub(super) fn keys(&self, exclude: &KeySet) -> KeySet {
        self.rows
            .keys()
            .map(|k| sample_key(*k))
            .filter(|k| !exclude.contains(k))
            .collect()
    }

    /// Attributes each new key to the first message in the batch that carries it: a second
    /// copy later in the same batch is a duplicate.
    fn claim(&self, mut new: KeySet) -> Claim {
        let mut c = Claim::default();
        let mut delta = DeltaBuilder::default();
        for (i, keys) in &self.messages {
            let mut any_new = false;
            for key in keys {
                if !new.remove(key) {
                    continue;
                }
                any_new = true;
                c.samples += 1;
                if let Some(r) = self.rows.get(&row_key(*key)) {
                    c.values += r.values.len() as u64;
                    delta.add(key.0, key.2, &r.signal_ids, &r.values);
                }
            }
            let outcome = if any_new {
                c.vehicles.extend(keys.first().map(|k| k.0));
                Outcome::Stored
            } else {
                Outcome::Duplicate
            };
            c.outcomes.push((*i, outcome));
        }
        c.delta = delta.finish();
        c
    }

    /// The fast way: every key must be new, or this fails with a unique violation (and, if
    /// the key belongs to a concurrent batch, only after that batch committed).
    pub(super) async fn write_fast(
        &self,
        tx: &mut PgConnection,
        method: WriteMethod,
    ) -> Result<(), StoreError> {
        match method {
            WriteMethod::Copy => {
                copy_in(tx, SAMPLE_COPY, &self.copy).await?;
            }
            WriteMethod::Unnest => {
                self.insert(tx, &KeySet::default(), false).await?;
            }
        }
        Ok(())
    }

    /// The careful way: the table's key says which samples are new. `taken` holds keys
    /// stored before a layout migration, which count as stored.
    pub(super) async fn write_careful(
        &self,
        tx: &mut PgConnection,
        taken: &KeySet,
    ) -> Result<Claim, StoreError> {
        let new = self.insert(tx, taken, true).await?;
        Ok(self.claim(new.into_iter().collect()))
    }

    /// `INSERT .. SELECT FROM UNNEST` of the rows not in `exclude`: each row's arrays are
    /// slices of two flat arrays (UNNEST cannot take an array of arrays). With `on_conflict`,
    /// taken keys are skipped and the new ones returned; without, a taken key fails it.
    async fn insert(
        &self,
        tx: &mut PgConnection,
        exclude: &KeySet,
        on_conflict: bool,
    ) -> Result<Vec<SampleKey>, StoreError> {
        let n = self.rows.len();
        let (mut vid, mut ts, mut seq, mut recv) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut offset, mut len) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut flat_ids, mut flat_values) = (Vec::new(), Vec::new());
        for (&key, r) in &self.rows {
            if exclude.contains(&sample_key(key)) {
                continue;
            }
            vid.push(key.0);
            ts.push(key.1);
            seq.push(key.2);
            recv.push(r.received_at);
            offset.push(flat_ids.len() as i32);
            len.push(r.signal_ids.len() as i32);
            flat_ids.extend_from_slice(&r.signal_ids);
            flat_values.extend_from_slice(&r.values);
        }
        let conflict = if on_conflict {
            "ON CONFLICT DO NOTHING RETURNING vehicle_id, seq, ts"
        } else {
            "RETURNING vehicle_id, seq, ts"
        };
        Ok(sqlx::query_as(&format!(
            "INSERT INTO samples (vehicle_id, ts, seq, received_at, signal_ids, signal_values)
             SELECT k.v, k.t, k.s, k.r,
                    ($7::int4[])[k.o + 1 : k.o + k.n], ($8::float8[])[k.o + 1 : k.o + k.n]
             FROM UNNEST($1::int4[], $2::timestamptz[], $3::int8[], $4::timestamptz[],
                         $5::int4[], $6::int4[]) AS k (v, t, s, r, o, n)
             {conflict}"
        ))
        .bind(vid)
        .bind(ts)
        .bind(seq)
        .bind(recv)
        .bind(offset)
        .bind(len)
        .bind(flat_ids)
        .bind(flat_values)
        .fetch_all(&mut *tx)
        .await?)
    }

    /// Which of the batch's keys the old sample ledger holds, while a layout migration is
    /// under way (empty otherwise).
    pub(super) async fn legacy_keys(&self, pool: &sqlx::PgPool) -> Result<KeySet, StoreError> {
        let (mut vid, mut seq, mut ts) = (vec![], vec![], vec![]);
        for &(v, t, s) in self.rows.keys() {
            vid.push(v);
            seq.push(s);
            ts.push(t);
        }
        let found: Vec<SampleKey> =
            sqlx::query_as("SELECT * FROM aftercare_legacy_sample_keys($1, $2, $3)")
                .bind(vid)
                .bind(seq)
                .bind(ts)
                .fetch_all(pool)
                .await?;
        Ok(found.into_iter().collect())
    }

    /// The earliest and latest sample time, for partitions that must exist.
    pub(super) fn time_range(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let mut times = self.rows.keys().map(|k| k.1);
        let first = times.next()?;
        Some(times.fold((first, first), |(lo, hi), t| (lo.min(t), hi.max(t))))
    }
}
