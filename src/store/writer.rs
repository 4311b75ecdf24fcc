//! The ingest write path: one transaction per batch, idempotent at every step. The sample and
//! report ledgers decide which messages are new; only their values, events, lifecycle merges,
//! rollup deltas and score marks are written, so a redelivered message changes nothing. A batch
//! is written the fast way first (plain COPY, assuming every message is new) and, if a key is
//! already taken, again the careful way (`ON CONFLICT DO NOTHING RETURNING`). Telemetry and
//! diagnostics each have their own submodule; this one orders the statements, the dead
//! letters and the score marks. Everything goes in key order, so concurrent writers take
//! locks in one order.

use super::diagnostics::{merge_dtc_lifecycles, DiagnosticsPlan};
use super::rollup::RollupDelta;
use super::telemetry::TelemetryPlan;
use super::{IdMap, Store, StoreError};
use crate::config::WriteMethod;
use crate::wire::Message;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{Acquire, PgConnection};
use std::collections::{BTreeMap, BTreeSet};

/// Dead-letter payloads above this are stored truncated (the size is kept).
const DEAD_LETTER_MAX_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    pub payload: Bytes,
    pub reason: String,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub enum BatchItem {
    Message {
        message: Message,
        received_at: DateTime<Utc>,
    },
    DeadLetter {
        letter: DeadLetter,
        received_at: DateTime<Utc>,
    },
    /// Acknowledged without storing (e.g. retained messages); keeps its place in ack order.
    Ignored,
}

/// The signal names the telemetry among `items` carries, repeats included.
pub fn signal_names(items: &[BatchItem]) -> impl Iterator<Item = &str> {
    items
        .iter()
        .filter_map(|i| match i {
            BatchItem::Message {
                message: Message::Telemetry { samples, .. },
                ..
            } => Some(samples),
            _ => None,
        })
        .flatten()
        .flat_map(|s| s.values.iter().map(|(name, _)| name.as_str()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    Duplicate,
    DeadLetter,
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::Duplicate => "duplicate",
            Outcome::DeadLetter => "dead_letter",
            Outcome::Ignored => "ignored",
        }
    }
}

#[derive(Debug, Default)]
pub struct BatchResult {
    /// One per input item, in input order.
    pub outcomes: Vec<Outcome>,
    pub values_stored: u64,
    pub samples_stored: u64,
    pub dtc_reports_stored: u64,
    pub dead_letters: u64,
    /// Where the batch's time went, stage by stage (for the stage-time metric and the bench).
    pub stages: Vec<(&'static str, std::time::Duration)>,
}

/// Lap timer for the stages of one batch write.
pub(super) struct Laps {
    last: std::time::Instant,
    laps: Vec<(&'static str, std::time::Duration)>,
}

impl Laps {
    fn start() -> Laps {
        Laps {
            last: std::time::Instant::now(),
            laps: Vec::with_capacity(8),
        }
    }

    pub(super) fn lap(&mut self, stage: &'static str) {
        let now = std::time::Instant::now();
        self.laps.push((stage, now - self.last));
        self.last = now;
    }
}

impl Store {
    /// Writes a batch in one transaction and reports what became of each item. Nothing is
    /// visible (or acknowledgeable) before this returns `Ok`. The batch is first written the
    /// fast way, assuming every message is new; if one is not (a redelivery), that
    /// transaction fails on the key and the batch is written again the careful way.
    pub async fn write_batch(
        &self,
        items: &[BatchItem],
        method: WriteMethod,
    ) -> Result<BatchResult, StoreError> {
        self.write_batch_gated(items, method, None).await
    }

    /// `write_batch`, holding a permit of `gate` (when given) only while it uses the
    /// database: ids are resolved from the cache and rows encoded before, so a writer slot is
    /// never spent on work that needs no connection.
    pub async fn write_batch_gated(
        &self,
        items: &[BatchItem],
        method: WriteMethod,
        gate: Option<&tokio::sync::Semaphore>,
    ) -> Result<BatchResult, StoreError> {
        let mut laps = Laps::start();
        let vins: Vec<&str> = items
            .iter()
            .filter_map(|i| match i {
                BatchItem::Message { message, .. } => Some(message.vin().as_str()),
                _ => None,
            })
            .collect();
        let vehicle_ids = self.resolve_vehicles(&vins).await?;
        let names: Vec<&str> = signal_names(items).collect();
        let signal_ids = self.resolve_signals(&names).await?;
        laps.lap("resolve");
        let batch = Batch {
            items,
            telemetry: TelemetryPlan::new(
                items,
                &vehicle_ids,
                &signal_ids,
                method,
                self.flavor.writes_rollup(),
            ),
            diagnostics: DiagnosticsPlan::new(items, &vehicle_ids),
            vehicle_ids: &vehicle_ids,
            signal_ids: &signal_ids,
        };
        laps.lap("prepare");
        // A closed gate (never closed here) just stops gating.
        let _permit = match gate {
            Some(gate) => gate.acquire().await.ok(),
            None => None,
        };
        laps.lap("queued");
        let mut conn = self.pool.acquire().await?;
        match batch.write(&mut conn, method, false, &mut laps).await {
            Err(e) if e.is_unique_violation() => {
                laps.lap("fast_failed");
                batch.write(&mut conn, method, true, &mut laps).await
            }
            done => done,
        }
        .map(|mut result| {
            result.stages = laps.laps;
            result
        })
    }

    /// VIN to vehicle id, creating vehicles on first sight. Runs outside the batch
    /// transaction: a vehicle row without data is harmless, and keeps the batch short.
    pub(super) async fn resolve_vehicles(&self, vins: &[&str]) -> Result<IdMap, StoreError> {
        resolve_ids(&self.pool, &self.vehicle_ids, vins, "vehicles", "vin").await
    }

    pub(super) async fn resolve_signals(&self, names: &[&str]) -> Result<IdMap, StoreError> {
        resolve_ids(&self.pool, &self.signal_ids, names, "signals", "name").await
    }
}

/// Looks names up in `cache`, inserting the missing ones into `table` (`id`, `column`); a
/// connection is taken only for those.
async fn resolve_ids(
    pool: &sqlx::PgPool,
    cache: &std::sync::Mutex<IdMap>,
    names: &[&str],
    table: &str,
    column: &str,
) -> Result<IdMap, StoreError> {
    let mut found = IdMap::default();
    let mut missing: Vec<String> = Vec::new();
    {
        let cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        for name in names {
            if found.contains_key(*name) {
                continue;
            }
            match cache.get(*name) {
                Some(id) => {
                    found.insert((*name).to_owned(), *id);
                }
                None => {
                    found.insert((*name).to_owned(), 0);
                    missing.push((*name).to_owned());
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(found);
    }
    missing.sort();
    let mut conn = pool.acquire().await?;
    sqlx::query(&format!(
        "INSERT INTO {table} ({column}) SELECT * FROM UNNEST($1::text[]) ON CONFLICT ({column}) DO NOTHING"
    ))
    .bind(&missing)
    .execute(&mut *conn)
    .await?;
    let rows: Vec<(i32, String)> = sqlx::query_as(&format!(
        "SELECT id, {column} FROM {table} WHERE {column} = ANY($1)"
    ))
    .bind(&missing)
    .fetch_all(&mut *conn)
    .await?;
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    for (id, name) in rows {
        cache.insert(name.clone(), id);
        found.insert(name, id);
    }
    Ok(found)
}

/// A batch with its ids resolved and its telemetry prepared.
struct Batch<'a> {
    items: &'a [BatchItem],
    telemetry: TelemetryPlan,
    diagnostics: DiagnosticsPlan<'a>,
    vehicle_ids: &'a IdMap,
    signal_ids: &'a IdMap,
}

impl Batch<'_> {
    /// One transaction. Statements go in one fixed order (sample ledger, values, rollup delta,
    /// report ledger, DTC events and lifecycles, dead letters, score marks), each in key
    /// order, so concurrent batches take locks in one order.
    async fn write(
        &self,
        conn: &mut PgConnection,
        method: WriteMethod,
        careful: bool,
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

        if !self.telemetry.is_empty() {
            let careful_claim;
            let claimed = if careful {
                let (claimed, stored) = self
                    .telemetry
                    .write_careful(&mut tx, items, self.vehicle_ids, self.signal_ids)
                    .await?;
                laps.lap("telemetry_careful");
                result.values_stored = stored.len() as u64;
                if self.telemetry.delta.is_some() {
                    RollupDelta::from_sorted(&stored).insert(&mut tx).await?;
                    laps.lap("rollup_delta");
                }
                careful_claim = claimed;
                &careful_claim
            } else {
                result.values_stored = self.telemetry.write_fast(&mut tx, method, laps).await?;
                laps.lap("values");
                if let Some(delta) = &self.telemetry.delta {
                    delta.insert(&mut tx).await?;
                    laps.lap("rollup_delta");
                }
                &self.telemetry.all_new
            };
            for &(i, outcome) in &claimed.outcomes {
                result.outcomes[i] = outcome;
            }
            result.samples_stored = claimed.samples;
            touched.extend(claimed.vehicles.iter().copied());
        }

        // Diagnostics: report ledger, then events and lifecycles of the new reports.
        if !self.diagnostics.is_empty() {
            let careful_claim;
            let claimed = if careful {
                careful_claim = self.diagnostics.write_careful(&mut tx).await?;
                &careful_claim
            } else {
                self.diagnostics.write_fast(&mut tx).await?;
                &self.diagnostics.all_new
            };
            for &(i, outcome) in &claimed.outcomes {
                result.outcomes[i] = outcome;
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
    let mut c = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for (digest, (l, first, last, n)) in merged {
        let keep = l.payload.len().min(DEAD_LETTER_MAX_BYTES);
        c.0.push(digest);
        c.1.push(l.topic.clone());
        c.2.push(l.payload[..keep].to_vec());
        c.3.push(i32::try_from(l.payload.len()).unwrap_or(i32::MAX));
        c.4.push(keep < l.payload.len());
        c.5.push(l.reason.clone());
        c.6.push(l.detail.clone());
        c.7.push(first);
        c.8.push(last);
        c.9.push(n);
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
    .bind(c.0)
    .bind(c.1)
    .bind(c.2)
    .bind(c.3)
    .bind(c.4)
    .bind(c.5)
    .bind(c.6)
    .bind(c.7)
    .bind(c.8)
    .bind(c.9)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
