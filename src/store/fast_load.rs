//! Fresh history in bulk: years of messages for vehicles the database holds nothing for yet.
//! The keys' job (which copy of a message is the first) is done here in memory, for one range
//! of vehicles at a time, with the same rules as the ingest writer: the first copy of a sample
//! or report key is stored with its arrival time, later copies are duplicates, lifecycles merge
//! order-independently and the daily rollup is what folding the stored values would give.
//! Every table then gets plain binary COPY in key order, so live ingest can continue from the
//! result. With vehicle ids rising range by range, every index grows at its right edge.
//!
//! Only for vehicles without stored history ([`Store::holds_history_for`]): a key that is
//! already taken fails the COPY, and the caller should have used the exactly-once path.

use super::batch::{copy_in, BatchItem, DeadLetter, SampleKey};
use super::copy::{CopyEncoder, SampleCopyEncoder, SAMPLE_COPY};
use super::diagnostics::{encode_events, encode_report, event_rows, Lifecycle};
use super::rollup::DeltaBuilder;
use super::writer::{insert_dead_letters, mark_for_scoring};
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

/// Everything but the samples of one range, encoded for COPY.
pub struct LedgerPart {
    dtc_reports: Vec<u8>,
    dtc_events: Vec<u8>,
    dtcs: Vec<u8>,
    signal_daily: Vec<u8>,
    /// (vehicle, signal) pairs the range sent.
    vehicle_signals: (Vec<i32>, Vec<i32>),
    dead_letters: Vec<(DeadLetter, DateTime<Utc>)>,
    /// Vehicles with stored data, for the scoring worker.
    touched: BTreeSet<i32>,
}

/// One range of vehicles, encoded: the samples (the biggest table, written on a connection of
/// its own) and the rest.
pub struct EncodedRange {
    pub samples: Vec<u8>,
    pub ledgers: LedgerPart,
    pub counts: LoadCounts,
}

/// Encodes the fresh history of a range of vehicles. `items` holds every delivery of those
/// vehicles in arrival order (parsed, or dead letters), as ingest would have received them.
pub fn encode_range(
    items: &[BatchItem],
    vehicle_ids: &IdMap,
    signal_ids: &IdMap,
) -> Result<EncodedRange, StoreError> {
    let mut counts = LoadCounts::default();
    let vehicle = |vin: &str| {
        vehicle_ids
            .get(vin)
            .copied()
            .ok_or_else(|| StoreError::BulkLoad(format!("no vehicle id for {vin}")))
    };
    // (vehicle, ts, seq) -> the first copy: arrival, signal ids ascending with their values.
    type Row = (DateTime<Utc>, Vec<i32>, Vec<f64>);
    let mut rows: BTreeMap<(i32, DateTime<Utc>, i64), Row> = BTreeMap::new();
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
                    let Entry::Vacant(slot) = rows.entry((vehicle_id, s.ts, s.seq)) else {
                        continue;
                    };
                    let mut pairs = Vec::with_capacity(s.values.len());
                    for (name, value) in &s.values {
                        let signal_id =
                            signal_ids.get(name.as_str()).copied().ok_or_else(|| {
                                StoreError::BulkLoad(format!("no signal id for {name}"))
                            })?;
                        pairs.push((signal_id, *value));
                    }
                    pairs.sort_unstable_by_key(|p| p.0);
                    let (ids, values): (Vec<i32>, Vec<f64>) = pairs.into_iter().unzip();
                    slot.insert((*received_at, ids, values));
                    any_new = true;
                    counts.samples += 1;
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
            // Mapped feeds go through the exactly-once path, never this one.
            BatchItem::Message {
                message: Message::Combined { vin, .. },
                ..
            } => {
                return Err(StoreError::BulkLoad(format!(
                    "a combined message (for {vin}) cannot take the fast path"
                )))
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
    counts.dtc_reports = reports.len() as u64;
    let mut delta = DeltaBuilder::default();
    let mut pairs: BTreeSet<(i32, i32)> = BTreeSet::new();
    let value_count: usize = rows.values().map(|r| r.1.len()).sum();
    counts.values = value_count as u64;
    let mut samples = SampleCopyEncoder::with_capacity(rows.len(), value_count);
    for (&(vehicle_id, ts, seq), (received_at, ids, values)) in &rows {
        samples.push(vehicle_id, ts, seq, *received_at, ids, values);
        delta.add(vehicle_id, ts, ids, values);
        pairs.extend(ids.iter().map(|&s| (vehicle_id, s)));
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
    let mut signal_daily = CopyEncoder::with_capacity(rows.len() * 20);
    delta.finish().encode_daily_rows(&mut signal_daily);
    Ok(EncodedRange {
        samples: samples.finish(),
        ledgers: LedgerPart {
            dtc_reports: report_rows.finish(),
            dtc_events: event_copy.finish(),
            dtcs: dtcs.finish(),
            signal_daily: signal_daily.finish(),
            vehicle_signals: pairs.into_iter().unzip(),
            dead_letters,
            touched,
        },
        counts,
    })
}

impl Store {
    /// Whether any of `vins` already has stored history: samples, reports, DTC lifecycles,
    /// rollup rows or service records.
    pub async fn holds_history_for(&self, vins: &[String]) -> Result<bool, StoreError> {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (
                 SELECT 1 FROM vehicles v WHERE v.vin = ANY($1) AND (
                     EXISTS (SELECT 1 FROM all_samples x WHERE x.vehicle_id = v.id)
                     OR EXISTS (SELECT 1 FROM dtc_reports x WHERE x.vehicle_id = v.id)
                     OR EXISTS (SELECT 1 FROM dtc_events x WHERE x.vehicle_id = v.id)
                     OR EXISTS (SELECT 1 FROM dtcs x WHERE x.vehicle_id = v.id)
                     OR EXISTS (SELECT 1 FROM service_records x WHERE x.vehicle_id = v.id)
                     OR EXISTS (SELECT 1 FROM signal_daily x WHERE x.vehicle_id = v.id)))",
        )
        .bind(vins)
        .fetch_one(&self.pool)
        .await?;
        Ok(held)
    }

    /// VIN to vehicle id, creating the vehicles that do not exist yet.
    pub async fn vehicle_ids(&self, vins: &[&str]) -> Result<IdMap, StoreError> {
        self.resolve_vehicles(vins).await
    }

    /// Brings `signal_daily` up to date with everything stored: folds the pending deltas.
    pub async fn settle_rollup(&self) -> Result<(), StoreError> {
        self.fold_rollup_all().await?;
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
    pub async fn write_samples(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let mut tx = self.conn.begin().await?;
        copy_in(&mut tx, SAMPLE_COPY, data).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Report ledger, DTC events and lifecycles, rollup rows, which vehicle sends which
    /// signals, dead letters and score marks.
    pub async fn write_ledgers(&mut self, part: &LedgerPart) -> Result<(), StoreError> {
        let mut tx = self.conn.begin().await?;
        for (statement, data) in [
            (
                "COPY dtc_reports (vehicle_id, seq, ts, received_at, source, mil, n_dtcs)
                 FROM STDIN (FORMAT binary)",
                &part.dtc_reports,
            ),
            (
                "COPY dtc_events (vehicle_id, ts, seq, code, status, spn, fmi, oc, sa, source)
                 FROM STDIN (FORMAT binary)",
                &part.dtc_events,
            ),
            (
                "COPY dtcs (vehicle_id, code, spn, fmi, first_seen, last_seen, cleared_at,
                            last_status, last_status_ts, reports) FROM STDIN (FORMAT binary)",
                &part.dtcs,
            ),
            (
                "COPY signal_daily (vehicle_id, signal_id, day, n, min, max, sum, sumsq)
                 FROM STDIN (FORMAT binary)",
                &part.signal_daily,
            ),
        ] {
            copy_in(&mut tx, statement, data).await?;
        }
        // A pair may exist without data (a batch admitted, then not written): no COPY.
        sqlx::query(
            "INSERT INTO vehicle_signals (vehicle_id, signal_id)
             SELECT * FROM UNNEST($1::int4[], $2::int4[]) ON CONFLICT DO NOTHING",
        )
        .bind(&part.vehicle_signals.0)
        .bind(&part.vehicle_signals.1)
        .execute(&mut *tx)
        .await?;
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
