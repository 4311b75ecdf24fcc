//! Fresh history in bulk: years of messages for vehicles the database holds nothing for yet.
//! The ledgers' job (which copy of a message is the first) is done here in memory, for one
//! range of vehicles at a time, with the same rules as the ingest writer: the first copy of a
//! sample or report key is stored with its arrival time, later copies are duplicates, the
//! first value of a (vehicle, signal, ts) wins, lifecycles merge order-independently and the
//! daily rollup is what folding the stored values would give. Every table then gets plain
//! binary COPY in key order, ledgers included, so live ingest can continue from the result.
//! With vehicle ids rising range by range, every index grows at its right edge.
//!
//! Only for vehicles without stored history ([`Store::holds_history_for`]): a key that is
//! already taken fails the COPY, and the caller should have used the exactly-once path.

use super::copy::{CopyEncoder, TelemetryCopyEncoder};
use super::diagnostics::{encode_events, encode_report, event_rows, Lifecycle};
use super::rollup::RollupDelta;
use super::telemetry::{copy_in, SampleKey, ValueRow};
use super::writer::{insert_dead_letters, mark_for_scoring, BatchItem, DeadLetter};
use super::IdMap;
use super::{Store, StoreError};
use crate::wire::{DtcReport, Message};
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{Acquire, Postgres};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// What a range stored, counted like `BatchResult`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoadCounts {
    pub messages_stored: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    pub samples: u64,
    pub values: u64,
    pub dtc_reports: u64,
}

/// Everything but the telemetry values of one range, encoded for COPY.
pub struct LedgerPart {
    samples: Vec<u8>,
    dtc_reports: Vec<u8>,
    dtc_events: Vec<u8>,
    dtcs: Vec<u8>,
    /// None where the service does not maintain the rollup (a continuous aggregate does).
    signal_daily: Option<Vec<u8>>,
    dead_letters: Vec<(DeadLetter, DateTime<Utc>)>,
    /// Vehicles with stored data, for the scoring worker.
    touched: BTreeSet<i32>,
}

/// One range of vehicles, encoded: the values (the biggest table, written on a connection of
/// its own) and the rest.
pub struct EncodedRange {
    pub telemetry: Vec<u8>,
    pub ledgers: LedgerPart,
    pub counts: LoadCounts,
}

/// Encodes the fresh history of a range of vehicles. `items` holds every delivery of those
/// vehicles in arrival order (parsed, or dead letters), as ingest would have received them.
pub fn encode_range(
    items: &[BatchItem],
    vehicle_ids: &IdMap,
    signal_ids: &IdMap,
    with_rollup: bool,
) -> Result<EncodedRange, StoreError> {
    let mut counts = LoadCounts::default();
    let vehicle = |vin: &str| {
        vehicle_ids
            .get(vin)
            .copied()
            .ok_or_else(|| StoreError::BulkLoad(format!("no vehicle id for {vin}")))
    };
    // Key -> (received_at, n_values) of the first copy.
    let mut ledger: BTreeMap<SampleKey, (DateTime<Utc>, i32)> = BTreeMap::new();
    // Values in arrival order; sorted stably below, so the first of equal keys stays first.
    let mut values: Vec<ValueRow> = Vec::new();
    let mut reports: BTreeMap<SampleKey, (DateTime<Utc>, &DtcReport)> = BTreeMap::new();
    let mut dead_letters = Vec::new();
    let mut touched = BTreeSet::new();
    for item in items {
        match item {
            BatchItem::Message {
                message: Message::Telemetry { vin, samples },
                received_at,
            } => {
                let vehicle_id = vehicle(vin.as_str())?;
                let mut any_new = false;
                for s in samples {
                    let Entry::Vacant(slot) = ledger.entry((vehicle_id, s.seq, s.ts)) else {
                        continue;
                    };
                    slot.insert((*received_at, s.values.len() as i32));
                    any_new = true;
                    counts.samples += 1;
                    for (name, value) in &s.values {
                        let signal_id =
                            signal_ids.get(name.as_str()).copied().ok_or_else(|| {
                                StoreError::BulkLoad(format!("no signal id for {name}"))
                            })?;
                        values.push(ValueRow {
                            vehicle_id,
                            signal_id,
                            ts: s.ts,
                            value: *value,
                        });
                    }
                }
                if any_new {
                    counts.messages_stored += 1;
                    touched.insert(vehicle_id);
                } else {
                    counts.duplicates += 1;
                }
            }
            BatchItem::Message {
                message: Message::Dtc { vin, report },
                received_at,
            } => {
                let vehicle_id = vehicle(vin.as_str())?;
                let key = (vehicle_id, report.seq, report.ts);
                match reports.entry(key) {
                    Entry::Occupied(_) => counts.duplicates += 1,
                    Entry::Vacant(slot) => {
                        slot.insert((*received_at, report));
                        counts.messages_stored += 1;
                        touched.insert(vehicle_id);
                    }
                }
            }
            BatchItem::DeadLetter {
                letter,
                received_at,
            } => {
                counts.dead_letters += 1;
                dead_letters.push((letter.clone(), *received_at));
            }
            BatchItem::Ignored => {}
        }
    }
    values.sort_by_key(|r| (r.vehicle_id, r.signal_id, r.ts));
    values.dedup_by_key(|r| (r.vehicle_id, r.signal_id, r.ts));
    counts.values = values.len() as u64;
    counts.dtc_reports = reports.len() as u64;

    let mut telemetry = TelemetryCopyEncoder::with_capacity(values.len());
    for r in &values {
        telemetry.push(r.vehicle_id, r.signal_id, r.ts, r.value);
    }
    let mut samples = CopyEncoder::with_capacity(ledger.len() * 48);
    for ((vehicle_id, seq, ts), (received_at, n_values)) in &ledger {
        samples.row(5);
        samples.int4(*vehicle_id);
        samples.int8(*seq);
        samples.timestamptz(*ts);
        samples.timestamptz(*received_at);
        samples.int4(*n_values);
    }
    let mut report_rows = CopyEncoder::with_capacity(reports.len() * 64);
    let mut accepted = Vec::with_capacity(reports.len());
    for (key, (received_at, report)) in &reports {
        encode_report(&mut report_rows, *key, *received_at, report);
        accepted.push((key.0, *report));
    }
    let mut events = event_rows(&accepted);
    // One report naming a code twice: the table keeps the first entry, as ON CONFLICT would.
    events.dedup_by(|later, first| later.same_key(first));
    let mut event_copy = CopyEncoder::with_capacity(events.len() * 64);
    encode_events(&mut event_copy, &events);
    let mut lifecycles: BTreeMap<(i32, String), Lifecycle> = BTreeMap::new();
    for (vehicle_id, r) in &accepted {
        for d in &r.dtcs {
            let obs = Lifecycle::observe(d.status, r.ts, &d.code);
            lifecycles
                .entry((*vehicle_id, d.code.key()))
                .and_modify(|l| l.merge(&obs))
                .or_insert(obs);
        }
    }
    let mut dtcs = CopyEncoder::with_capacity(lifecycles.len() * 96);
    for ((vehicle_id, code), l) in &lifecycles {
        dtcs.row(10);
        dtcs.int4(*vehicle_id);
        dtcs.text(code);
        dtcs.opt(l.spn, CopyEncoder::int4);
        dtcs.opt(l.fmi, CopyEncoder::int2);
        dtcs.opt(l.first_seen, CopyEncoder::timestamptz);
        dtcs.opt(l.last_seen, CopyEncoder::timestamptz);
        dtcs.opt(l.cleared_at, CopyEncoder::timestamptz);
        dtcs.text(l.last_status);
        dtcs.timestamptz(l.last_status_ts);
        dtcs.int4(l.reports);
    }
    let signal_daily = with_rollup.then(|| {
        let mut enc = CopyEncoder::with_capacity(values.len() * 70);
        RollupDelta::from_sorted(&values).encode_daily_rows(&mut enc);
        enc.finish()
    });
    Ok(EncodedRange {
        telemetry: telemetry.finish(),
        ledgers: LedgerPart {
            samples: samples.finish(),
            dtc_reports: report_rows.finish(),
            dtc_events: event_copy.finish(),
            dtcs: dtcs.finish(),
            signal_daily,
            dead_letters,
            touched,
        },
        counts,
    })
}

/// The statement that brings a continuous-aggregate rollup up to date over all stored time.
/// It cannot run inside a transaction. A refresh policy only looks back a few weeks, so
/// without this, history loaded in bulk would stay out of the materialized rollup.
pub const REFRESH_ROLLUP_AGGREGATE: &str =
    "CALL refresh_continuous_aggregate('signal_daily', NULL, NULL)";

impl Store {
    /// Whether any of `vins` already has stored history: samples, values, reports, DTC
    /// lifecycles, rollup rows or service records.
    pub async fn holds_history_for(&self, vins: &[String]) -> Result<bool, StoreError> {
        let rollup = if self.flavor.writes_rollup() {
            "OR EXISTS (SELECT 1 FROM signal_daily x WHERE x.vehicle_id = v.id)"
        } else {
            // A continuous aggregate only ever holds what telemetry holds.
            ""
        };
        let held: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (
                 SELECT 1 FROM vehicles v WHERE v.vin = ANY($1) AND (
                     EXISTS (SELECT 1 FROM samples x WHERE x.vehicle_id = v.id)
                     OR EXISTS (SELECT 1 FROM telemetry x WHERE x.vehicle_id = v.id)
                     OR EXISTS (SELECT 1 FROM dtc_reports x WHERE x.vehicle_id = v.id)
                     OR EXISTS (SELECT 1 FROM dtc_events x WHERE x.vehicle_id = v.id)
                     OR EXISTS (SELECT 1 FROM dtcs x WHERE x.vehicle_id = v.id)
                     OR EXISTS (SELECT 1 FROM service_records x WHERE x.vehicle_id = v.id)
                     {rollup}))"
        ))
        .bind(vins)
        .fetch_one(&self.pool)
        .await?;
        Ok(held)
    }

    /// VIN to vehicle id, creating the vehicles that do not exist yet.
    pub async fn vehicle_ids(&self, vins: &[&str]) -> Result<IdMap, StoreError> {
        self.resolve_vehicles(vins).await
    }

    /// Signal name to id, creating the signals that do not exist yet.
    pub async fn signal_ids(&self, names: &[&str]) -> Result<IdMap, StoreError> {
        self.resolve_signals(names).await
    }

    /// Brings `signal_daily` up to date with everything stored: folds the pending deltas
    /// where the service maintains it, refreshes the continuous aggregate otherwise.
    pub async fn settle_rollup(&self) -> Result<(), StoreError> {
        if self.flavor.writes_rollup() {
            self.fold_rollup_all().await?;
        } else {
            sqlx::raw_sql(REFRESH_ROLLUP_AGGREGATE)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// A connection for a fresh load. Its commits do not wait for the disk: a crash loses at
    /// most the last ranges, and a fresh load that did not finish is redone from scratch.
    pub async fn load_connection(&self) -> Result<LoadConnection, StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut *conn)
            .await?;
        Ok(LoadConnection { conn })
    }
}

/// One COPY connection of a fresh load; each call is one transaction.
pub struct LoadConnection {
    conn: PoolConnection<Postgres>,
}

impl LoadConnection {
    pub async fn write_telemetry(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let mut tx = self.conn.begin().await?;
        copy_in(
            &mut tx,
            "COPY telemetry (vehicle_id, signal_id, ts, value) FROM STDIN (FORMAT binary)",
            data,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ledgers, DTC events and lifecycles, rollup rows, dead letters and score marks.
    pub async fn write_ledgers(&mut self, part: &LedgerPart) -> Result<(), StoreError> {
        let mut tx = self.conn.begin().await?;
        for (statement, data) in [
            (
                "COPY samples (vehicle_id, seq, ts, received_at, n_values) FROM STDIN (FORMAT binary)",
                Some(&part.samples),
            ),
            (
                "COPY dtc_reports (vehicle_id, seq, ts, received_at, source, mil, n_dtcs)
                 FROM STDIN (FORMAT binary)",
                Some(&part.dtc_reports),
            ),
            (
                "COPY dtc_events (vehicle_id, ts, seq, code, status, spn, fmi, oc, sa, source)
                 FROM STDIN (FORMAT binary)",
                Some(&part.dtc_events),
            ),
            (
                "COPY dtcs (vehicle_id, code, spn, fmi, first_seen, last_seen, cleared_at,
                            last_status, last_status_ts, reports) FROM STDIN (FORMAT binary)",
                Some(&part.dtcs),
            ),
            (
                "COPY signal_daily (vehicle_id, signal_id, day, n, min, max, sum, sumsq)
                 FROM STDIN (FORMAT binary)",
                part.signal_daily.as_ref(),
            ),
        ] {
            if let Some(data) = data {
                copy_in(&mut tx, statement, data).await?;
            }
        }
        if !part.dead_letters.is_empty() {
            // Not per vehicle, and few: merged into whatever the table holds, as ingest does.
            let letters: Vec<(&DeadLetter, DateTime<Utc>)> =
                part.dead_letters.iter().map(|(l, at)| (l, *at)).collect();
            insert_dead_letters(&mut tx, &letters).await?;
        }
        if !part.touched.is_empty() {
            mark_for_scoring(&mut tx, &part.touched).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Puts the connection back as it was.
    pub async fn close(mut self) -> Result<(), StoreError> {
        sqlx::query("RESET synchronous_commit")
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }
}
