//! The ingest write path: one transaction per batch, idempotent at every step. The sample
//! table's key and the report ledger decide which messages are new; only their rows, events,
//! lifecycle merges, rollup deltas and score marks are written, so a redelivered message
//! changes nothing. A batch is written the fast way first (plain COPY, assuming every message
//! is new) and, if a key is already taken, again the careful way (`ON CONFLICT DO NOTHING
//! RETURNING`). Telemetry and diagnostics each have their own module; this one orders the
//! statements, the dead letters and the score marks. Everything goes in key order, so
//! concurrent writers take locks in one order.

use super::admit::Admission;
use super::batch::{BatchItem, BatchResult, DeadLetter, KeySet, Laps, Outcome};
use super::diagnostics::{merge_dtc_lifecycles, DiagnosticsPlan};
use super::samples::SamplesPlan;
use super::{Store, StoreError};
use crate::config::WriteMethod;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{Acquire, PgConnection};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// Dead letters keep at most this much of their payload (with its size and a SHA-256 of the
/// whole), so a flood of large rejects cannot fill the database.
pub const DEAD_LETTER_MAX_BYTES: usize = 64 * 1024;

impl Store {
    /// Admits and writes a batch in one transaction and reports what became of each item.
    /// For callers whose messages cannot pass a bound on distinct signals (tests, loads of
    /// known data): a message refused by one is an error. Ingest admits first, turns refused
    /// messages into dead letters and calls `write_admitted`.
    pub async fn write_batch(
        &self,
        items: &[BatchItem],
        method: WriteMethod,
    ) -> Result<BatchResult, StoreError> {
        let admission = self.admit(items).await?;
        if let Some((i, reject)) = admission.refused.first() {
            return Err(StoreError::BulkLoad(format!("item {i} refused: {reject}")));
        }
        self.write_admitted(items, &admission, method, None).await
    }

    /// Writes admitted items in one transaction. Nothing is visible (or acknowledgeable)
    /// before this returns `Ok`. The batch is first written the fast way, assuming every
    /// message is new; if one is not (a redelivery), that transaction fails on the key and the
    /// batch is written again the careful way. Rows are encoded before a permit of `gate`
    /// (when given) is taken, so a writer slot is never spent on work that needs no
    /// connection. Refused items of `admission` must have been replaced (they are skipped).
    pub async fn write_admitted(
        &self,
        items: &[BatchItem],
        admission: &Admission,
        method: WriteMethod,
        gate: Option<&tokio::sync::Semaphore>,
    ) -> Result<BatchResult, StoreError> {
        let mut laps = Laps::start();
        let batch = Batch {
            items,
            samples: SamplesPlan::new(items, &admission.vehicle_ids, &admission.signal_ids),
            diagnostics: DiagnosticsPlan::new(items, &admission.vehicle_ids),
        };
        laps.lap("prepare");
        // During a layout migration, keys stored in the old ledger count as taken.
        let legacy = if !batch.samples.is_empty() && self.legacy_layout().await? {
            batch.samples.legacy_keys(&self.pool).await?
        } else {
            KeySet::default()
        };
        // A closed gate (never closed here) just stops gating.
        let _permit = match gate {
            Some(gate) => gate.acquire().await.ok(),
            None => None,
        };
        laps.lap("queued");
        let mut conn = self.pool.acquire().await?;
        let mut partitions_made = false;
        loop {
            let done = if legacy.is_empty() {
                match batch.write(&mut conn, method, None, &mut laps).await {
                    Err(e) if e.is_unique_violation() => {
                        laps.lap("fast_failed");
                        batch
                            .write(&mut conn, method, Some(&legacy), &mut laps)
                            .await
                    }
                    done => done,
                }
            } else {
                batch
                    .write(&mut conn, method, Some(&legacy), &mut laps)
                    .await
            };
            match done {
                // Partitions are made ahead by maintenance; one may still be missing (the
                // maintenance fell behind, or a late report for a new range): make it, once.
                Err(e) if e.is_missing_partition() && !partitions_made => {
                    partitions_made = true;
                    let (samples, reports) =
                        (batch.samples.time_range(), batch.diagnostics.time_range());
                    super::retention::ensure_partitions_for(&self.pool, samples, reports).await?;
                    laps.lap("partitions");
                }
                done => {
                    return done.map(|mut result| {
                        result.stages = laps.laps;
                        result
                    })
                }
            }
        }
    }
}

/// A batch with its ids resolved and its rows prepared.
struct Batch<'a> {
    items: &'a [BatchItem],
    samples: SamplesPlan,
    diagnostics: DiagnosticsPlan<'a>,
}

impl Batch<'_> {
    /// One transaction. Statements go in one fixed order (samples, rollup delta, report
    /// ledger, DTC events and lifecycles, dead letters, score marks), each in key order, so
    /// concurrent batches take locks in one order. `careful` holds the keys to count as taken
    /// (old-ledger keys) and asks for the careful way.
    async fn write(
        &self,
        conn: &mut PgConnection,
        method: WriteMethod,
        careful: Option<&KeySet>,
        laps: &mut Laps,
    ) -> Result<BatchResult, StoreError> {
        let items = self.items;
        let mut tx = conn.begin().await?;
        let mut result = BatchResult {
            outcomes: vec![Outcome::Ignored; items.len()],
            ..BatchResult::default()
        };
        // Vehicles that get newly stored data, marked for rescoring at the end.
        let mut touched: BTreeSet<i32> = BTreeSet::new();

        if !self.samples.is_empty() {
            let careful_claim;
            let claimed = match careful {
                Some(taken) => {
                    careful_claim = self.samples.write_careful(&mut tx, taken).await?;
                    laps.lap("samples_careful");
                    &careful_claim
                }
                None => {
                    self.samples.write_fast(&mut tx, method).await?;
                    laps.lap("samples");
                    &self.samples.all_new
                }
            };
            claimed.delta.insert(&mut tx).await?;
            laps.lap("rollup_delta");
            for &(i, outcome) in &claimed.outcomes {
                result.outcomes[i] = outcome;
            }
            result.values_stored = claimed.values;
            result.samples_stored = claimed.samples;
            touched.extend(claimed.vehicles.iter().copied());
        }

        // Diagnostics: report ledger, then events and lifecycles of the new reports.
        if !self.diagnostics.is_empty() {
            let careful_claim;
            let claimed = if careful.is_some() {
                careful_claim = self.diagnostics.write_careful(&mut tx).await?;
                &careful_claim
            } else {
                self.diagnostics.write_fast(&mut tx).await?;
                &self.diagnostics.all_new
            };
            for &(i, outcome) in &claimed.outcomes {
                // A combined message is stored when either of its parts is new.
                if result.outcomes[i] != Outcome::Stored {
                    result.outcomes[i] = outcome;
                }
            }
            result.dtc_reports_stored = claimed.accepted.len() as u64;
            touched.extend(claimed.accepted.iter().map(|(vehicle_id, _)| *vehicle_id));
            merge_dtc_lifecycles(&mut tx, &claimed.accepted).await?;
            laps.lap("dtc");
        }

        // Dead letters.
        let letters: Vec<(&DeadLetter, DateTime<Utc>)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                BatchItem::DeadLetter {
                    letter,
                    received_at,
                } => {
                    result.outcomes[i] = Outcome::DeadLetter;
                    Some((letter, *received_at))
                }
                _ => None,
            })
            .collect();
        result.dead_letters = letters.len() as u64;
        if !letters.is_empty() {
            insert_dead_letters(&mut tx, &letters).await?;
            laps.lap("dead_letters");
        }

        // Last, because concurrent batches for the same vehicle wait here on each other's row
        // lock until the earlier one commits.
        if !touched.is_empty() {
            mark_for_scoring(&mut tx, &touched).await?;
            laps.lap("score_marks");
        }

        tx.commit().await?;
        laps.lap("commit");
        Ok(result)
    }
}

/// Marks vehicles with newly stored data for the scoring worker, one row each, in key order.
/// A redelivery stores nothing and so marks nothing.
pub(super) async fn mark_for_scoring(
    tx: &mut PgConnection,
    vehicles: &BTreeSet<i32>,
) -> Result<(), StoreError> {
    let ids: Vec<i32> = vehicles.iter().copied().collect();
    sqlx::query(
        "INSERT INTO score_dirty (vehicle_id, marked_at)
         SELECT v, clock_timestamp() FROM UNNEST($1::int4[]) AS v ORDER BY v
         ON CONFLICT (vehicle_id) DO UPDATE SET marked_at = excluded.marked_at",
    )
    .bind(ids)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(super) async fn insert_dead_letters(
    tx: &mut PgConnection,
    letters: &[(&DeadLetter, DateTime<Utc>)],
) -> Result<(), StoreError> {
    // One row per distinct (topic, payload); merged here first because one INSERT .. ON
    // CONFLICT DO UPDATE may not touch a row twice.
    // digest -> (letter, first received, last received, deliveries)
    type Merged<'a> = (&'a DeadLetter, DateTime<Utc>, DateTime<Utc>, i32);
    let mut merged: BTreeMap<Vec<u8>, Merged> = BTreeMap::new();
    for (letter, at) in letters {
        let mut h = Sha256::new();
        h.update(letter.topic.as_bytes());
        h.update([0u8]);
        h.update(&letter.payload);
        merged
            .entry(h.finalize().to_vec())
            .and_modify(|e| {
                e.1 = e.1.min(*at);
                e.2 = e.2.max(*at);
                e.3 += 1;
            })
            .or_insert((letter, *at, *at, 1));
    }
    let mut c = DeadLetterColumns::default();
    for (digest, (l, first, last, n)) in merged {
        let keep = l.payload.len().min(DEAD_LETTER_MAX_BYTES);
        c.digest.push(digest);
        c.topic.push(storable(&l.topic));
        c.payload.push(&l.payload[..keep]);
        c.size
            .push(i32::try_from(l.payload.len()).unwrap_or(i32::MAX));
        c.truncated.push(keep < l.payload.len());
        c.reason.push(storable(&l.reason));
        c.detail.push(storable(&l.detail));
        c.first.push(first);
        c.last.push(last);
        c.deliveries.push(n);
    }
    sqlx::query(
        "INSERT INTO dead_letters AS d (digest, topic, payload, payload_size, truncated, reason,
                                        detail, first_received, last_received, deliveries)
         SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::bytea[], $4::int4[], $5::bool[],
                              $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[],
                              $10::int4[])
         ON CONFLICT (digest) DO UPDATE SET
             last_received = GREATEST(d.last_received, EXCLUDED.last_received),
             deliveries = d.deliveries + EXCLUDED.deliveries",
    )
    .bind(c.digest)
    .bind(c.topic)
    .bind(c.payload)
    .bind(c.size)
    .bind(c.truncated)
    .bind(c.reason)
    .bind(c.detail)
    .bind(c.first)
    .bind(c.last)
    .bind(c.deliveries)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Text a `text` column can keep: a NUL (which a topic or a detail quoting the payload may
/// carry) becomes U+FFFD, so a dead letter can always be stored.
fn storable(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// The `dead_letters` columns of merged letters, bound as arrays.
#[derive(Default)]
struct DeadLetterColumns<'a> {
    digest: Vec<Vec<u8>>,
    topic: Vec<Cow<'a, str>>,
    payload: Vec<&'a [u8]>,
    size: Vec<i32>,
    truncated: Vec<bool>,
    reason: Vec<Cow<'a, str>>,
    detail: Vec<Cow<'a, str>>,
    first: Vec<DateTime<Utc>>,
    last: Vec<DateTime<Utc>>,
    deliveries: Vec<i32>,
}
