//! Bulk history: the same days, messages, profiles and service records as live mode, written
//! at database speed. Each message goes through the contract parser and `Store::write_batch`
//! exactly as ingest would store it (a malformed one as a dead letter), service records and
//! profiles through the store functions the API uses. A generator thread simulates and parses
//! while the database writes, so the two cores overlap. `received_at` is the simulated arrival
//! time, which is what live mode would have recorded had it run in real time.

use super::engine::Simulation;
use super::progress::Progress;
use super::summary::Summary;
use super::truth::Truth;
use super::SimulateError;
use crate::config::WriteMethod;
use crate::store::service_records::{insert_service_records, NewServiceRecord};
use crate::store::{profiles, BatchItem, BatchResult, DeadLetter, Outcome, Store, StoreError};
use crate::wire::{parse_message, Limits};
use chrono::Utc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages per `write_batch` call.
pub const BATCH_MESSAGES: usize = 2000;
/// `write_batch` calls in flight.
const WRITERS: usize = 2;
const RECORDS_PER_CALL: usize = 1000;
const PROFILES_PER_CALL: usize = 2000;

/// What the database said about everything written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub messages_stored: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    pub samples: u64,
    pub values: u64,
    pub dtc_reports: u64,
    pub records_created: u64,
}

pub struct BulkReport {
    pub summary: Summary,
    pub truth: Truth,
    pub stored: Stored,
    pub elapsed: Duration,
    pub rollup_elapsed: Duration,
}

/// One day, parsed and ready to write.
struct Chunk {
    items: Vec<BatchItem>,
    records: Vec<NewServiceRecord>,
    day: u32,
}

/// The batch item ingest would make of a delivery that arrived at `received_at`.
pub fn batch_item(
    topic: &str,
    payload: &[u8],
    received_at: chrono::DateTime<Utc>,
    now: chrono::DateTime<Utc>,
    limits: &Limits,
) -> BatchItem {
    match parse_message(topic, payload, now, limits) {
        Ok(message) => BatchItem::Message {
            message,
            received_at,
        },
        Err(reject) => BatchItem::DeadLetter {
            letter: DeadLetter {
                topic: topic.to_owned(),
                payload: bytes::Bytes::copy_from_slice(payload),
                reason: reject.reason.as_str().to_owned(),
                detail: reject.detail,
            },
            received_at,
        },
    }
}

/// Runs `sim` to the end, writing everything into `store`.
pub async fn run(
    store: Arc<Store>,
    mut sim: Simulation,
    method: WriteMethod,
    limits: Limits,
    progress: &Progress,
) -> Result<BulkReport, SimulateError> {
    let started = Instant::now();
    let profiles = sim.profiles();
    for chunk in profiles.chunks(PROFILES_PER_CALL) {
        profiles::upsert_profiles(store.pool(), chunk).await?;
    }
    let mut summary = Summary {
        vehicles: sim.config().vehicles,
        days: sim.config().days,
        ..Summary::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(4);
    let generator = std::thread::spawn(move || {
        let now = Utc::now();
        while let Some(day) = sim.next_day() {
            let mut items = Vec::with_capacity(day.deliveries.len());
            for d in &day.deliveries {
                summary.add_delivery(d);
                let m = &d.message;
                items.push(batch_item(&m.topic, &m.payload, d.at, now, &limits));
            }
            summary.add_records(&day.records);
            let chunk = Chunk {
                items,
                records: day.records,
                day: day.day,
            };
            if tx.blocking_send(chunk).is_err() {
                break;
            }
        }
        let truth = sim.into_truth();
        summary.add_truth(&truth);
        (summary, truth)
    });

    let mut stored = Stored::default();
    let mut pending: Vec<BatchItem> = Vec::new();
    // Two batches in flight keep both database cores busy; the ledgers make concurrent
    // writers safe, as with several ingest instances.
    let mut in_flight = tokio::task::JoinSet::new();
    while let Some(chunk) = rx.recv().await {
        pending.extend(chunk.items);
        if pending.len() >= BATCH_MESSAGES {
            if in_flight.len() >= WRITERS {
                collect(in_flight.join_next().await, &mut stored)?;
            }
            in_flight.spawn(write(store.clone(), std::mem::take(&mut pending), method));
        }
        for records in chunk.records.chunks(RECORDS_PER_CALL) {
            let result = insert_service_records(store.pool(), records).await?;
            stored.records_created += result.iter().filter(|r| r.created).count() as u64;
        }
        progress.day(chunk.day, stored.values);
    }
    in_flight.spawn(write(store.clone(), pending, method));
    while let Some(done) = in_flight.join_next().await {
        collect(Some(done), &mut stored)?;
    }
    let (summary, truth) = generator
        .join()
        .map_err(|_| SimulateError::Other("the generator thread panicked".into()))?;
    let elapsed = started.elapsed();
    progress.finish("folding the daily rollup");
    let rollup_started = Instant::now();
    // Every batch appended its rollup delta; fold them all now rather than leave years of
    // history to a running service's fold worker.
    if store.flavor().writes_rollup() {
        store.fold_rollup_all().await?;
    }
    Ok(BulkReport {
        summary,
        truth,
        stored,
        elapsed,
        rollup_elapsed: rollup_started.elapsed(),
    })
}

async fn write(
    store: Arc<Store>,
    items: Vec<BatchItem>,
    method: WriteMethod,
) -> Result<BatchResult, StoreError> {
    if items.is_empty() {
        return Ok(BatchResult::default());
    }
    store.write_batch(&items, method).await
}

fn collect(
    done: Option<Result<Result<BatchResult, StoreError>, tokio::task::JoinError>>,
    stored: &mut Stored,
) -> Result<(), SimulateError> {
    let Some(done) = done else { return Ok(()) };
    let result = done.map_err(|e| SimulateError::Other(format!("writer task: {e}")))??;
    for o in &result.outcomes {
        match o {
            Outcome::Stored => stored.messages_stored += 1,
            Outcome::Duplicate => stored.duplicates += 1,
            Outcome::DeadLetter => stored.dead_letters += 1,
            Outcome::Ignored => {}
        }
    }
    stored.samples += result.samples_stored;
    stored.values += result.values_stored;
    stored.dtc_reports += result.dtc_reports_stored;
    Ok(())
}
