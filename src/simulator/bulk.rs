//! Bulk history: the same days, messages, profiles and service records as live mode, written
//! at database speed. Every message goes through the contract parser (a malformed one becomes
//! a dead letter), service records and profiles through the store functions the API uses.
//! `received_at` is the simulated arrival time, which is what live mode would have recorded
//! had it run in real time. Two ways to store the messages:
//! - fast, when the database holds no history for the fleet's vehicles: the fleet is
//!   simulated range by range of vehicles (each over the whole run) on two threads, the
//!   ledgers' decisions are made in memory (`store::fast_load`) and every table, the daily
//!   rollup included, gets plain COPY in key order on two connections;
//! - exactly-once: day by day through `Store::write_batch`, as ingest would store them, with
//!   the rollup folded from its deltas at the end. Used when the vehicles already have
//!   history, where the ledgers must decide what is new.

use super::engine::{self, SimConfig, Simulation};
use super::progress::Progress;
use super::summary::Summary;
use super::truth::Truth;
use super::SimulateError;
use crate::config::WriteMethod;
use crate::store::fast_load::{encode_range, EncodedRange, LedgerPart, LoadCounts};
use crate::store::service_records::{insert_service_records, NewServiceRecord};
use crate::store::IdMap;
use crate::store::{
    profiles, signal_names, BatchItem, BatchResult, DeadLetter, Outcome, Store, StoreError,
};
use crate::wire::{parse_message, Limits};
use chrono::Utc;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages per `write_batch` call.
pub const BATCH_MESSAGES: usize = 2000;
/// `write_batch` calls in flight.
const WRITERS: usize = 2;
const RECORDS_PER_CALL: usize = 1000;
const PROFILES_PER_CALL: usize = 2000;
/// Vehicles per range on the fast path: about 600,000 values over two years, so a range's
/// COPY buffers stay in the tens of megabytes.
const RANGE_VEHICLES: usize = 100;
/// Threads simulating ranges on the fast path.
const GENERATORS: usize = 2;

/// Which way bulk mode stores the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BulkPath {
    /// Fast when the database holds no history for the fleet's vehicles, exactly-once
    /// otherwise.
    #[default]
    Auto,
    /// Fast; refused when the database already holds history for the fleet's vehicles.
    Fast,
    /// Through the ingest writer and its ledgers, day by day.
    ExactlyOnce,
}

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
    /// The path taken: `Fast` or `ExactlyOnce`.
    pub path: BulkPath,
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

/// Simulates `config` and writes everything into `store` the way `path` asks.
pub async fn run_with(
    store: Arc<Store>,
    config: SimConfig,
    path: BulkPath,
    method: WriteMethod,
    limits: Limits,
    progress: &Progress,
) -> Result<BulkReport, SimulateError> {
    if path == BulkPath::ExactlyOnce {
        return run(store, Simulation::new(config), method, limits, progress).await;
    }
    let vins: Vec<String> = (0..config.vehicles)
        .map(|i| super::fleet::vehicle(config.seed, i, config.workshops, config.start).vin)
        .collect();
    if store.holds_history_for(&vins).await? {
        if path == BulkPath::Fast {
            return Err(SimulateError::Invalid(
                "the database already holds history for vehicles of this fleet: the fast \
                 bulk path only writes vehicles without history (use --bulk-path \
                 exactly-once, or an empty database)"
                    .into(),
            ));
        }
        tracing::warn!(
            "the database already holds history for vehicles of this fleet; \
             writing through the exactly-once path"
        );
        return run(store, Simulation::new(config), method, limits, progress).await;
    }
    run_fast(store, config, limits, progress).await
}

/// One range of vehicles, simulated, parsed and encoded.
struct Range {
    encoded: EncodedRange,
    records: Vec<NewServiceRecord>,
    truth: Truth,
    summary: Summary,
    vehicles: usize,
}

/// The fast path (see the module comment).
async fn run_fast(
    store: Arc<Store>,
    config: SimConfig,
    limits: Limits,
    progress: &Progress,
) -> Result<BulkReport, SimulateError> {
    let started = Instant::now();
    let specs =
        super::fleet::generate(config.seed, config.vehicles, config.workshops, config.start);
    let profiles: Vec<_> = specs.iter().map(|s| (s.vin.clone(), s.profile())).collect();
    drop(specs);
    for chunk in profiles.chunks(PROFILES_PER_CALL) {
        profiles::upsert_profiles(store.pool(), chunk).await?;
    }
    let vins: Vec<&str> = profiles.iter().map(|(v, _)| v.as_str()).collect();
    let vehicle_ids = Arc::new(store.vehicle_ids(&vins).await?);
    drop(profiles);
    // Time partitions for the whole history (plain PostgreSQL), with room for clock skew.
    let margin = chrono::Duration::days(2);
    crate::store::retention::ensure_partitions_between(
        store.pool(),
        store.flavor(),
        config.start - margin,
        config.start + chrono::Duration::days(i64::from(config.days)) + margin,
    )
    .await?;
    progress.count_vehicles(config.vehicles as u64);

    let range_vehicles = config.vehicles.div_ceil(8).clamp(1, RANGE_VEHICLES);
    let ranges = config.vehicles.div_ceil(range_vehicles);
    let weather = Arc::new(engine::weather(&config));
    let config = Arc::new(config);
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, Result<Range, StoreError>)>(GENERATORS);
    let runtime = tokio::runtime::Handle::current();
    let mut generators = Vec::new();
    for _ in 0..GENERATORS {
        let (config, weather, next, tx, store, vehicle_ids, runtime, limits) = (
            config.clone(),
            weather.clone(),
            next.clone(),
            tx.clone(),
            store.clone(),
            vehicle_ids.clone(),
            runtime.clone(),
            limits.clone(),
        );
        generators.push(std::thread::spawn(move || {
            let now = Utc::now();
            let mut signal_ids = IdMap::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ranges {
                    return;
                }
                let first = i * range_vehicles;
                let last = (first + range_vehicles).min(config.vehicles);
                let range = generate_range(
                    &config,
                    &weather,
                    first..last,
                    now,
                    &limits,
                    &vehicle_ids,
                    &mut signal_ids,
                    |names| runtime.block_on(store.signal_ids(names)),
                );
                let failed = range.is_err();
                if tx.blocking_send((i, range)).is_err() || failed {
                    return;
                }
            }
        }));
    }
    drop(tx);

    // Two connections, each taking the ranges in order: values on one, everything else on the
    // other. Ranges come in vehicle order, so every index grows at its right edge.
    let (values_tx, mut values_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let (ledgers_tx, mut ledgers_rx) =
        tokio::sync::mpsc::channel::<(LedgerPart, Vec<NewServiceRecord>)>(1);
    let mut values_conn = store.load_connection().await?;
    let mut ledgers_conn = store.load_connection().await?;
    let values_writer = tokio::spawn(async move {
        while let Some(data) = values_rx.recv().await {
            values_conn.write_samples(&data).await?;
        }
        values_conn.close().await
    });
    let pool = store.pool().clone();
    let ledgers_writer = tokio::spawn(async move {
        let mut created = 0u64;
        while let Some((part, records)) = ledgers_rx.recv().await {
            ledgers_conn.write_ledgers(&part).await?;
            for chunk in records.chunks(RECORDS_PER_CALL) {
                let result = insert_service_records(&pool, chunk).await?;
                created += result.iter().filter(|r| r.created).count() as u64;
            }
        }
        ledgers_conn.close().await?;
        Ok::<u64, StoreError>(created)
    });

    let mut summary = Summary {
        vehicles: config.vehicles,
        days: config.days,
        ..Summary::default()
    };
    let mut truth = Truth::default();
    let mut counts = LoadCounts::default();
    let mut waiting: BTreeMap<usize, Range> = BTreeMap::new();
    let mut due = 0;
    let mut vehicles_done = 0u64;
    let mut sent_all = true;
    'receive: while let Some((i, range)) = rx.recv().await {
        waiting.insert(i, range?);
        while let Some(range) = waiting.remove(&due) {
            due += 1;
            let Range {
                encoded,
                records,
                truth: mut t,
                summary: s,
                vehicles,
            } = range;
            add_counts(&mut counts, &encoded.counts);
            summary.absorb(&s);
            truth.failures.append(&mut t.failures);
            truth.preventive.append(&mut t.preventive);
            truth.degraded.append(&mut t.degraded);
            if values_tx.send(encoded.samples).await.is_err()
                || ledgers_tx.send((encoded.ledgers, records)).await.is_err()
            {
                // A writer failed; its error is reported below.
                sent_all = false;
                break 'receive;
            }
            vehicles_done += vehicles as u64;
            progress.vehicles_done(vehicles_done, counts.values);
        }
    }
    drop((values_tx, ledgers_tx, rx));
    let values_done = values_writer.await;
    let ledgers_done = ledgers_writer.await;
    for g in generators {
        g.join()
            .map_err(|_| SimulateError::Other("a generator thread panicked".into()))?;
    }
    let join = |e: tokio::task::JoinError| SimulateError::Other(format!("writer task: {e}"));
    values_done.map_err(join)??;
    let records_created = ledgers_done.map_err(join)??;
    if !sent_all || due != ranges {
        return Err(SimulateError::Other(format!(
            "only {due} of {ranges} vehicle ranges were written"
        )));
    }
    truth.sort();
    summary.add_truth(&truth);
    let elapsed = started.elapsed();
    progress.finish("settling the daily rollup");
    let rollup_started = Instant::now();
    // Rollup rows went in with the ranges; deltas of anything else written meanwhile are
    // folded here.
    store.settle_rollup().await?;
    Ok(BulkReport {
        path: BulkPath::Fast,
        summary,
        truth,
        stored: Stored {
            messages_stored: counts.messages_stored,
            duplicates: counts.duplicates,
            dead_letters: counts.dead_letters,
            samples: counts.samples,
            values: counts.values,
            dtc_reports: counts.dtc_reports,
            records_created,
        },
        elapsed,
        rollup_elapsed: rollup_started.elapsed(),
    })
}

fn add_counts(into: &mut LoadCounts, c: &LoadCounts) {
    into.messages_stored += c.messages_stored;
    into.duplicates += c.duplicates;
    into.dead_letters += c.dead_letters;
    into.samples += c.samples;
    into.values += c.values;
    into.dtc_reports += c.dtc_reports;
}

/// Simulates fleet members `vehicles`, parses every delivery as ingest would, and encodes
/// what the database keeps of them. `resolve` creates and looks up signal ids not yet in
/// `signal_ids`.
#[allow(clippy::too_many_arguments)]
fn generate_range(
    config: &SimConfig,
    weather: &[[f64; 3]],
    vehicles: std::ops::Range<usize>,
    now: chrono::DateTime<Utc>,
    limits: &Limits,
    vehicle_ids: &IdMap,
    signal_ids: &mut IdMap,
    resolve: impl Fn(&[&str]) -> Result<IdMap, StoreError>,
) -> Result<Range, StoreError> {
    let n = vehicles.len();
    let out = engine::simulate_range(config, weather, vehicles);
    let mut summary = Summary::default();
    summary.add_records(&out.records);
    let mut items = Vec::new();
    for v in &out.vehicles {
        for d in &v.deliveries {
            summary.add_delivery(d);
            let m = &d.message;
            items.push(batch_item(&m.topic, &m.payload, d.at, now, limits));
        }
    }
    let mut missing: Vec<&str> = signal_names(&items)
        .filter(|name| !signal_ids.contains_key(*name))
        .collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        missing.dedup();
        signal_ids.extend(resolve(&missing)?);
    }
    let encoded = encode_range(&items, vehicle_ids, signal_ids)?;
    Ok(Range {
        encoded,
        records: out.records,
        truth: out.truth,
        summary,
        vehicles: n,
    })
}

/// Runs `sim` to the end through the exactly-once path (the ingest writer), writing
/// everything into `store`.
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
    // history to a running service's fold worker. On TimescaleDB the continuous aggregate
    // is refreshed instead: its policy only looks back a few weeks.
    store.settle_rollup().await?;
    Ok(BulkReport {
        path: BulkPath::ExactlyOnce,
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
