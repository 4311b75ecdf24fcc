//! The telemetry half of a batch write. The sample ledger decides which samples are new; only
//! their values go into `telemetry` and into the rollup delta. Two ways to do it:
//! - fast, for the normal case where every sample is new: ledger rows and values are encoded
//!   before the transaction and go in by plain binary COPY (or a plain `UNNEST` insert). A key
//!   that is already taken fails the statement, and the caller redoes the batch carefully.
//! - careful: `INSERT .. ON CONFLICT DO NOTHING RETURNING` for the ledger and the values, so
//!   exactly what went in is counted and rolled up.
//!
//! Rows go in sorted by key, so concurrent batches that collide on a key wait on each other in
//! one order and cannot deadlock.

use super::copy::{CopyEncoder, TelemetryCopyEncoder};
use super::rollup::RollupDelta;
use super::writer::{BatchItem, Laps, Outcome};
use super::IdMap;
use super::StoreError;
use crate::config::WriteMethod;
use crate::wire::Message;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// (vehicle, seq, ts): what identifies a sample (and a DTC report).
pub(super) type SampleKey = (i32, i64, DateTime<Utc>);

/// Keys a batch claims, one lookup per sample: hashed like `IdMap`.
pub(super) type KeySet = HashSet<SampleKey, foldhash::fast::RandomState>;

/// One signal value of a newly accepted sample.
#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub(super) struct ValueRow {
    pub vehicle_id: i32,
    pub signal_id: i32,
    pub ts: DateTime<Utc>,
    pub value: f64,
}

/// What a set of new sample keys makes of the batch's telemetry messages.
#[derive(Debug, Default)]
pub(super) struct Claim {
    /// (item index, outcome) for every telemetry message.
    pub outcomes: Vec<(usize, Outcome)>,
    pub samples: u64,
    /// Values of the new samples, sorted by (vehicle, signal, ts).
    pub values: Vec<ValueRow>,
    /// Vehicles with at least one new sample.
    pub vehicles: BTreeSet<i32>,
}

/// Attributes each new key to the first message in the batch that carries it: a second copy
/// later in the same batch is a duplicate.
fn claim(items: &[BatchItem], vehicle_ids: &IdMap, signal_ids: &IdMap, mut new: KeySet) -> Claim {
    let mut c = Claim::default();
    for (i, item) in items.iter().enumerate() {
        let BatchItem::Message {
            message: Message::Telemetry { vin, samples },
            ..
        } = item
        else {
            continue;
        };
        let vehicle_id = vehicle_ids[vin.as_str()];
        let mut any_new = false;
        for sample in samples {
            if new.remove(&(vehicle_id, sample.seq, sample.ts)) {
                any_new = true;
                c.samples += 1;
                c.values
                    .extend(sample.values.iter().map(|(name, value)| ValueRow {
                        vehicle_id,
                        signal_id: signal_ids[name.as_str()],
                        ts: sample.ts,
                        value: *value,
                    }));
            }
        }
        c.outcomes.push((
            i,
            if any_new {
                c.vehicles.insert(vehicle_id);
                Outcome::Stored
            } else {
                Outcome::Duplicate
            },
        ));
    }
    c.values
        .sort_unstable_by_key(|r| (r.vehicle_id, r.signal_id, r.ts));
    c
}

/// The batch's telemetry, prepared (outside the transaction) for the fast way.
pub(super) struct TelemetryPlan {
    /// Distinct sample keys, with received_at and n_values of their first copy.
    ledger: BTreeMap<SampleKey, (DateTime<Utc>, i32)>,
    /// What the batch stores if every key is new.
    pub all_new: Claim,
    ledger_copy: Vec<u8>,
    values_copy: Vec<u8>,
    /// The rollup delta if every key is new (only where the service maintains the rollup).
    pub delta: Option<RollupDelta>,
}

impl TelemetryPlan {
    pub(super) fn new(
        items: &[BatchItem],
        vehicle_ids: &IdMap,
        signal_ids: &IdMap,
        method: WriteMethod,
        with_delta: bool,
    ) -> TelemetryPlan {
        let mut ledger: BTreeMap<SampleKey, (DateTime<Utc>, i32)> = BTreeMap::new();
        for item in items {
            if let BatchItem::Message {
                message: Message::Telemetry { vin, samples },
                received_at,
            } = item
            {
                let id = vehicle_ids[vin.as_str()];
                for s in samples {
                    ledger
                        .entry((id, s.seq, s.ts))
                        .or_insert((*received_at, s.values.len() as i32));
                }
            }
        }
        let all_new = claim(
            items,
            vehicle_ids,
            signal_ids,
            ledger.keys().copied().collect(),
        );
        let mut enc = CopyEncoder::with_capacity(ledger.len() * 48);
        for ((vehicle_id, seq, ts), (received_at, n_values)) in &ledger {
            enc.row(5);
            enc.int4(*vehicle_id);
            enc.int8(*seq);
            enc.timestamptz(*ts);
            enc.timestamptz(*received_at);
            enc.int4(*n_values);
        }
        let values_copy = match method {
            WriteMethod::Copy => {
                let mut enc = TelemetryCopyEncoder::with_capacity(all_new.values.len());
                for r in &all_new.values {
                    enc.push(r.vehicle_id, r.signal_id, r.ts, r.value);
                }
                enc.finish()
            }
            WriteMethod::Unnest => Vec::new(),
        };
        TelemetryPlan {
            delta: with_delta.then(|| RollupDelta::from_sorted(&all_new.values)),
            ledger,
            ledger_copy: enc.finish(),
            values_copy,
            all_new,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ledger.is_empty()
    }

    /// The fast way: every key must be new, or this fails with a unique violation (and, if
    /// the key belongs to a concurrent batch, only after that batch committed).
    pub(super) async fn write_fast(
        &self,
        tx: &mut PgConnection,
        method: WriteMethod,
        laps: &mut Laps,
    ) -> Result<u64, StoreError> {
        copy_in(
            tx,
            "COPY samples (vehicle_id, seq, ts, received_at, n_values) FROM STDIN (FORMAT binary)",
            &self.ledger_copy,
        )
        .await?;
        laps.lap("sample_ledger");
        if self.all_new.values.is_empty() {
            return Ok(0);
        }
        match method {
            WriteMethod::Copy => {
                copy_in(
                    tx,
                    "COPY telemetry (vehicle_id, signal_id, ts, value) FROM STDIN (FORMAT binary)",
                    &self.values_copy,
                )
                .await
            }
            WriteMethod::Unnest => {
                let v = &self.all_new.values;
                let done = sqlx::query(
                    "INSERT INTO telemetry (vehicle_id, signal_id, ts, value)
                     SELECT * FROM UNNEST($1::int4[], $2::int4[], $3::timestamptz[], $4::float8[])",
                )
                .bind(v.iter().map(|r| r.vehicle_id).collect::<Vec<_>>())
                .bind(v.iter().map(|r| r.signal_id).collect::<Vec<_>>())
                .bind(v.iter().map(|r| r.ts).collect::<Vec<_>>())
                .bind(v.iter().map(|r| r.value).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
                Ok(done.rows_affected())
            }
        }
    }

    /// The careful way: the ledger says which samples are new, and only the values that
    /// actually went in (two different samples may carry the same (vehicle, signal, ts)) are
    /// counted and returned for the rollup.
    pub(super) async fn write_careful(
        &self,
        tx: &mut PgConnection,
        items: &[BatchItem],
        vehicle_ids: &IdMap,
        signal_ids: &IdMap,
    ) -> Result<(Claim, Vec<ValueRow>), StoreError> {
        let (mut vid, mut seq, mut ts, mut recv, mut nv) = (vec![], vec![], vec![], vec![], vec![]);
        for ((vehicle_id, s, t), (received_at, n_values)) in &self.ledger {
            vid.push(*vehicle_id);
            seq.push(*s);
            ts.push(*t);
            recv.push(*received_at);
            nv.push(*n_values);
        }
        let new: Vec<SampleKey> = sqlx::query_as(
            "INSERT INTO samples (vehicle_id, seq, ts, received_at, n_values)
             SELECT * FROM UNNEST($1::int4[], $2::int8[], $3::timestamptz[], $4::timestamptz[],
                                  $5::int4[])
             ON CONFLICT DO NOTHING
             RETURNING vehicle_id, seq, ts",
        )
        .bind(vid)
        .bind(seq)
        .bind(ts)
        .bind(recv)
        .bind(nv)
        .fetch_all(&mut *tx)
        .await?;
        let claimed = claim(items, vehicle_ids, signal_ids, new.into_iter().collect());
        if claimed.values.is_empty() {
            return Ok((claimed, Vec::new()));
        }
        let v = &claimed.values;
        let mut stored: Vec<ValueRow> = sqlx::query_as(
            "INSERT INTO telemetry (vehicle_id, signal_id, ts, value)
             SELECT * FROM UNNEST($1::int4[], $2::int4[], $3::timestamptz[], $4::float8[])
             ON CONFLICT DO NOTHING
             RETURNING vehicle_id, signal_id, ts, value",
        )
        .bind(v.iter().map(|r| r.vehicle_id).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.signal_id).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.ts).collect::<Vec<_>>())
        .bind(v.iter().map(|r| r.value).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        stored.sort_unstable_by_key(|r| (r.vehicle_id, r.signal_id, r.ts));
        Ok((claimed, stored))
    }
}

pub(super) async fn copy_in(
    tx: &mut PgConnection,
    statement: &str,
    data: &[u8],
) -> Result<u64, StoreError> {
    let mut copy = tx.copy_in_raw(statement).await?;
    copy.send(data).await?;
    Ok(copy.finish().await?)
}
