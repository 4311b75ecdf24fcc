//! The ingest write path: one transaction per batch, idempotent at every step. The sample and
//! report ledgers decide which messages are new (`ON CONFLICT DO NOTHING RETURNING`); only
//! their values, events, lifecycle merges and rollups are written, so a redelivered message
//! changes nothing. Upserts are fed in key order so concurrent writers lock rows in one order.

use super::rollup::RollupDelta;
use super::telemetry::{SampleKey, TelemetryPlan};
use super::{Store, StoreError};
use crate::config::WriteMethod;
use crate::wire::{DtcCode, DtcReport, Message};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{Acquire, PgConnection};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

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
        let mut laps = Laps::start();
        let mut conn = self.pool.acquire().await?;
        let vins: Vec<&str> = items
            .iter()
            .filter_map(|i| match i {
                BatchItem::Message { message, .. } => Some(message.vin().as_str()),
                _ => None,
            })
            .collect();
        let vehicle_ids = self.resolve_vehicles(&mut conn, &vins).await?;
        let names: Vec<&str> = items
            .iter()
            .filter_map(|i| match i {
                BatchItem::Message {
                    message: Message::Telemetry { samples, .. },
                    ..
                } => Some(samples),
                _ => None,
            })
            .flatten()
            .flat_map(|s| s.values.iter().map(|(n, _)| n.as_str()))
            .collect();
        let signal_ids = self.resolve_signals(&mut conn, &names).await?;
        laps.lap("resolve");
        let batch = Batch {
            items,
            plan: TelemetryPlan::new(
                items,
                &vehicle_ids,
                &signal_ids,
                method,
                self.flavor.writes_rollup(),
            ),
            vehicle_ids: &vehicle_ids,
            signal_ids: &signal_ids,
        };
        laps.lap("prepare");
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
    async fn resolve_vehicles(
        &self,
        conn: &mut PgConnection,
        vins: &[&str],
    ) -> Result<HashMap<String, i32>, StoreError> {
        resolve_ids(conn, &self.vehicle_ids, vins, "vehicles", "vin").await
    }

    async fn resolve_signals(
        &self,
        conn: &mut PgConnection,
        names: &[&str],
    ) -> Result<HashMap<String, i32>, StoreError> {
        resolve_ids(conn, &self.signal_ids, names, "signals", "name").await
    }
}

/// Looks names up in `cache`, inserting the missing ones into `table` (`id`, `column`).
async fn resolve_ids(
    conn: &mut PgConnection,
    cache: &std::sync::Mutex<HashMap<String, i32>>,
    names: &[&str],
    table: &str,
    column: &str,
) -> Result<HashMap<String, i32>, StoreError> {
    let mut found = HashMap::new();
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
    plan: TelemetryPlan,
    vehicle_ids: &'a HashMap<String, i32>,
    signal_ids: &'a HashMap<String, i32>,
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

        if !self.plan.is_empty() {
            let careful_claim;
            let claimed = if careful {
                let (claimed, stored) = self
                    .plan
                    .write_careful(&mut tx, items, self.vehicle_ids, self.signal_ids)
                    .await?;
                laps.lap("telemetry_careful");
                result.values_stored = stored.len() as u64;
                if self.plan.delta.is_some() {
                    RollupDelta::from_sorted(&stored).insert(&mut tx).await?;
                    laps.lap("rollup_delta");
                }
                careful_claim = claimed;
                &careful_claim
            } else {
                result.values_stored = self.plan.write_fast(&mut tx, method, laps).await?;
                laps.lap("values");
                if let Some(delta) = &self.plan.delta {
                    delta.insert(&mut tx).await?;
                    laps.lap("rollup_delta");
                }
                &self.plan.all_new
            };
            for &(i, outcome) in &claimed.outcomes {
                result.outcomes[i] = outcome;
            }
            result.samples_stored = claimed.samples;
            touched.extend(claimed.vehicles.iter().copied());
        }

        // Diagnostics: report ledger, then events and lifecycle of the new reports.
        let mut new_reports = insert_report_ledger(&mut tx, items, self.vehicle_ids).await?;
        let mut accepted: Vec<(i32, &DtcReport)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let BatchItem::Message {
                message: Message::Dtc { vin, report },
                ..
            } = item
            else {
                continue;
            };
            let vehicle_id = self.vehicle_ids[vin.as_str()];
            if new_reports.remove(&(vehicle_id, report.seq, report.ts)) {
                accepted.push((vehicle_id, report));
                touched.insert(vehicle_id);
                result.outcomes[i] = Outcome::Stored;
            } else {
                result.outcomes[i] = Outcome::Duplicate;
            }
        }
        result.dtc_reports_stored = accepted.len() as u64;
        if !accepted.is_empty() {
            insert_dtc_events(&mut tx, &accepted).await?;
            merge_dtc_lifecycles(&mut tx, &accepted).await?;
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

async fn insert_report_ledger(
    tx: &mut PgConnection,
    items: &[BatchItem],
    vehicle_ids: &HashMap<String, i32>,
) -> Result<HashSet<SampleKey>, StoreError> {
    // Sorted by key, like the sample ledger, so concurrent batches cannot deadlock.
    let mut reports: Vec<(SampleKey, DateTime<Utc>, &DtcReport)> = items
        .iter()
        .filter_map(|item| match item {
            BatchItem::Message {
                message: Message::Dtc { vin, report },
                received_at,
            } => Some((
                (vehicle_ids[vin.as_str()], report.seq, report.ts),
                *received_at,
                report,
            )),
            _ => None,
        })
        .collect();
    reports.sort_by_key(|(key, ..)| *key);
    let (mut vid, mut seq, mut ts, mut recv, mut source, mut mil, mut n) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for ((vehicle_id, s, t), received_at, report) in reports {
        vid.push(vehicle_id);
        seq.push(s);
        ts.push(t);
        recv.push(received_at);
        source.push(report.source.clone());
        mil.push(report.mil);
        n.push(report.dtcs.len() as i32);
    }
    if vid.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<SampleKey> = sqlx::query_as(
        "INSERT INTO dtc_reports (vehicle_id, seq, ts, received_at, source, mil, n_dtcs)
         SELECT * FROM UNNEST($1::int4[], $2::int8[], $3::timestamptz[], $4::timestamptz[],
                              $5::text[], $6::bool[], $7::int4[])
         ON CONFLICT DO NOTHING
         RETURNING vehicle_id, seq, ts",
    )
    .bind(vid)
    .bind(seq)
    .bind(ts)
    .bind(recv)
    .bind(source)
    .bind(mil)
    .bind(n)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Marks vehicles with newly stored data for the scoring worker, one row each, in key order.
/// A redelivery stores nothing and so marks nothing.
async fn mark_for_scoring(
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

fn j1939_parts(code: &DtcCode) -> (Option<i32>, Option<i16>, Option<i16>, Option<i16>) {
    match code {
        DtcCode::J2012(_) => (None, None, None, None),
        DtcCode::J1939 { spn, fmi, oc, sa } => (
            Some(*spn as i32),
            Some(i16::from(*fmi)),
            oc.map(i16::from),
            sa.map(i16::from),
        ),
    }
}

async fn insert_dtc_events(
    tx: &mut PgConnection,
    reports: &[(i32, &DtcReport)],
) -> Result<(), StoreError> {
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
    for (vehicle_id, r) in reports {
        for d in &r.dtcs {
            let (spn, fmi, oc, sa) = j1939_parts(&d.code);
            c.0.push(*vehicle_id);
            c.1.push(r.ts);
            c.2.push(r.seq);
            c.3.push(d.code.key());
            c.4.push(d.status.as_str());
            c.5.push(spn);
            c.6.push(fmi);
            c.7.push(oc);
            c.8.push(sa);
            c.9.push(r.source.clone());
        }
    }
    if c.0.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO dtc_events (vehicle_id, ts, seq, code, status, spn, fmi, oc, sa, source)
         SELECT * FROM UNNEST($1::int4[], $2::timestamptz[], $3::int8[], $4::text[], $5::text[],
                              $6::int4[], $7::int2[], $8::int2[], $9::int2[], $10::text[])
         ON CONFLICT DO NOTHING",
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

/// Lifecycle summary of one code over a set of reports; merging two is commutative, so
/// reports may arrive in any order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lifecycle {
    pub spn: Option<i32>,
    pub fmi: Option<i16>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub cleared_at: Option<DateTime<Utc>>,
    pub last_status: &'static str,
    pub last_status_ts: DateTime<Utc>,
    pub reports: i32,
}

impl Lifecycle {
    pub(crate) fn observe(
        status: crate::wire::DtcStatus,
        ts: DateTime<Utc>,
        code: &DtcCode,
    ) -> Self {
        let cleared = status == crate::wire::DtcStatus::Cleared;
        let (spn, fmi, ..) = j1939_parts(code);
        Lifecycle {
            spn,
            fmi,
            first_seen: (!cleared).then_some(ts),
            last_seen: (!cleared).then_some(ts),
            cleared_at: cleared.then_some(ts),
            last_status: status.as_str(),
            last_status_ts: ts,
            reports: 1,
        }
    }

    /// Same rules as the SQL merge in `merge_dtc_lifecycles`.
    pub(crate) fn merge(&mut self, o: &Lifecycle) {
        fn least(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        self.first_seen = least(self.first_seen, o.first_seen);
        self.last_seen = self.last_seen.max(o.last_seen);
        self.cleared_at = self.cleared_at.max(o.cleared_at);
        if (o.last_status_ts, o.last_status) > (self.last_status_ts, self.last_status) {
            self.last_status = o.last_status;
            self.last_status_ts = o.last_status_ts;
        }
        self.reports += o.reports;
    }
}

async fn merge_dtc_lifecycles(
    tx: &mut PgConnection,
    reports: &[(i32, &DtcReport)],
) -> Result<(), StoreError> {
    let mut merged: BTreeMap<(i32, String), Lifecycle> = BTreeMap::new();
    for (vehicle_id, r) in reports {
        for d in &r.dtcs {
            let obs = Lifecycle::observe(d.status, r.ts, &d.code);
            merged
                .entry((*vehicle_id, d.code.key()))
                .and_modify(|l| l.merge(&obs))
                .or_insert(obs);
        }
    }
    if merged.is_empty() {
        return Ok(());
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
    for ((vehicle_id, code), l) in merged {
        c.0.push(vehicle_id);
        c.1.push(code);
        c.2.push(l.spn);
        c.3.push(l.fmi);
        c.4.push(l.first_seen);
        c.5.push(l.last_seen);
        c.6.push(l.cleared_at);
        c.7.push(l.last_status);
        c.8.push(l.last_status_ts);
        c.9.push(l.reports);
    }
    sqlx::query(
        "INSERT INTO dtcs AS d (vehicle_id, code, spn, fmi, first_seen, last_seen, cleared_at,
                                last_status, last_status_ts, reports)
         SELECT * FROM UNNEST($1::int4[], $2::text[], $3::int4[], $4::int2[], $5::timestamptz[],
                              $6::timestamptz[], $7::timestamptz[], $8::text[], $9::timestamptz[],
                              $10::int4[])
         ON CONFLICT (vehicle_id, code) DO UPDATE SET
             first_seen = LEAST(d.first_seen, EXCLUDED.first_seen),
             last_seen = GREATEST(d.last_seen, EXCLUDED.last_seen),
             cleared_at = GREATEST(d.cleared_at, EXCLUDED.cleared_at),
             last_status = CASE WHEN (EXCLUDED.last_status_ts, EXCLUDED.last_status COLLATE \"C\")
                                     > (d.last_status_ts, d.last_status COLLATE \"C\")
                                THEN EXCLUDED.last_status ELSE d.last_status END,
             last_status_ts = GREATEST(d.last_status_ts, EXCLUDED.last_status_ts),
             reports = d.reports + EXCLUDED.reports",
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

async fn insert_dead_letters(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::DtcStatus;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn lifecycle_merge_is_order_independent() {
        let code = DtcCode::J2012("P0301".into());
        let obs = [
            Lifecycle::observe(DtcStatus::Pending, at("2026-01-01T00:00:00Z"), &code),
            Lifecycle::observe(DtcStatus::Confirmed, at("2026-01-02T00:00:00Z"), &code),
            Lifecycle::observe(DtcStatus::Cleared, at("2026-01-03T00:00:00Z"), &code),
            Lifecycle::observe(DtcStatus::Active, at("2026-01-03T00:00:00Z"), &code),
        ];
        let fold = |order: &[usize]| {
            let mut l = obs[order[0]].clone();
            for &i in &order[1..] {
                l.merge(&obs[i]);
            }
            l
        };
        let a = fold(&[0, 1, 2, 3]);
        for order in [[3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]] {
            assert_eq!(fold(&order), a);
        }
        assert_eq!(a.first_seen, Some(at("2026-01-01T00:00:00Z")));
        assert_eq!(a.last_seen, Some(at("2026-01-03T00:00:00Z")));
        assert_eq!(a.cleared_at, Some(at("2026-01-03T00:00:00Z")));
        assert_eq!(a.last_status, "cleared");
        assert_eq!(a.reports, 4);
    }
}
