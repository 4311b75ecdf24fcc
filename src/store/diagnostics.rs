//! The diagnostics half of a batch write. The report ledger (`dtc_reports`) decides which
//! DTC reports are new; only their entries go into `dtc_events`, and each (vehicle, code)
//! lifecycle is merged order-independently. Fast and careful like the telemetry half
//! (`store::samples`): plain binary COPY when every report is new, `ON CONFLICT DO NOTHING
//! RETURNING` otherwise. Rows go in sorted by key.

use super::batch::{copy_in, BatchItem, KeySet, Outcome, SampleKey};
use super::copy::CopyEncoder;
use super::IdMap;
use super::StoreError;
use crate::wire::{DtcCode, DtcReport};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::BTreeMap;

/// What a set of new report keys makes of the batch's DTC messages.
#[derive(Debug, Default)]
pub(super) struct ReportClaim<'a> {
    /// (item index, outcome) for every DTC message.
    pub outcomes: Vec<(usize, Outcome)>,
    /// The new reports, in key order.
    pub accepted: Vec<(i32, &'a DtcReport)>,
}

/// A report of the batch: its key, item index and arrival time.
type Entry<'a> = (SampleKey, usize, DateTime<Utc>, &'a DtcReport);

/// The first message in the batch with a new key stores it; later copies are duplicates.
fn claim<'a>(entries: &[Entry<'a>], mut new: KeySet) -> ReportClaim<'a> {
    let mut c = ReportClaim::default();
    for (key, i, _, report) in entries {
        if new.remove(key) {
            c.accepted.push((key.0, report));
            c.outcomes.push((*i, Outcome::Stored));
        } else {
            c.outcomes.push((*i, Outcome::Duplicate));
        }
    }
    c
}

/// The batch's DTC reports, prepared (outside the transaction) for the fast way.
pub(super) struct DiagnosticsPlan<'a> {
    /// Sorted by key, then by arrival.
    entries: Vec<Entry<'a>>,
    /// What the batch stores if every key is new.
    pub all_new: ReportClaim<'a>,
    reports_copy: Vec<u8>,
    events_copy: Vec<u8>,
}

impl<'a> DiagnosticsPlan<'a> {
    pub(super) fn new(items: &'a [BatchItem], vehicle_ids: &IdMap) -> Self {
        let mut entries: Vec<Entry<'a>> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                BatchItem::Message {
                    message,
                    received_at,
                } => message.report().map(|report| {
                    (
                        (vehicle_ids[message.vin().as_str()], report.seq, report.ts),
                        i,
                        *received_at,
                        report,
                    )
                }),
                _ => None,
            })
            .collect();
        entries.sort_by_key(|(key, i, ..)| (*key, *i));
        let all_new = claim(&entries, entries.iter().map(|e| e.0).collect());
        let mut reports = CopyEncoder::with_capacity(entries.len() * 64);
        let mut last = None;
        for (key, _, received_at, report) in &entries {
            if last == Some(*key) {
                continue;
            }
            last = Some(*key);
            encode_report(&mut reports, *key, *received_at, report);
        }
        let mut events = CopyEncoder::with_capacity(all_new.accepted.len() * 64);
        encode_events(&mut events, &event_rows(&all_new.accepted));
        DiagnosticsPlan {
            all_new,
            reports_copy: reports.finish(),
            events_copy: events.finish(),
            entries,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The earliest and latest report time, for partitions that must exist.
    pub(super) fn time_range(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let mut times = self.entries.iter().map(|e| e.0 .2);
        let first = times.next()?;
        Some(times.fold((first, first), |(lo, hi), t| (lo.min(t), hi.max(t))))
    }

    /// The fast way: every report must be new, or this fails with a unique violation.
    pub(super) async fn write_fast(&self, tx: &mut PgConnection) -> Result<(), StoreError> {
        copy_in(
            tx,
            "COPY dtc_reports (vehicle_id, seq, ts, received_at, source, mil, n_dtcs)
             FROM STDIN (FORMAT binary)",
            &self.reports_copy,
        )
        .await?;
        if !self.all_new.accepted.is_empty() {
            copy_in(
                tx,
                "COPY dtc_events (vehicle_id, ts, seq, code, status, spn, fmi, oc, sa, source)
                 FROM STDIN (FORMAT binary)",
                &self.events_copy,
            )
            .await?;
        }
        Ok(())
    }

    /// The careful way: only the reports the ledger takes count, and their events go in with
    /// `ON CONFLICT DO NOTHING`.
    pub(super) async fn write_careful(
        &self,
        tx: &mut PgConnection,
    ) -> Result<ReportClaim<'a>, StoreError> {
        let (mut vid, mut seq, mut ts, mut recv, mut source, mut mil, mut n) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut last = None;
        for (key, _, received_at, report) in &self.entries {
            if last == Some(*key) {
                continue;
            }
            last = Some(*key);
            vid.push(key.0);
            seq.push(key.1);
            ts.push(key.2);
            recv.push(*received_at);
            source.push(report.source.as_deref());
            mil.push(report.mil);
            n.push(report.dtcs.len() as i32);
        }
        let new: Vec<SampleKey> = sqlx::query_as(
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
        let claimed = claim(&self.entries, new.into_iter().collect());
        let rows = event_rows(&claimed.accepted);
        if rows.is_empty() {
            return Ok(claimed);
        }
        sqlx::query(
            "INSERT INTO dtc_events (vehicle_id, ts, seq, code, status, spn, fmi, oc, sa, source)
             SELECT * FROM UNNEST($1::int4[], $2::timestamptz[], $3::int8[], $4::text[],
                                  $5::text[], $6::int4[], $7::int2[], $8::int2[], $9::int2[],
                                  $10::text[])
             ON CONFLICT DO NOTHING",
        )
        .bind(rows.iter().map(|r| r.vehicle_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.ts).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.code.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.spn).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.fmi).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.oc).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.sa).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.source).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        Ok(claimed)
    }
}

/// Encodes `dtc_events` rows for `COPY dtc_events (vehicle_id, ts, seq, code, status, spn,
/// fmi, oc, sa, source)`.
pub(super) fn encode_events(enc: &mut CopyEncoder, rows: &[EventRow<'_>]) {
    for row in rows {
        enc.row(10);
        enc.int4(row.vehicle_id);
        enc.timestamptz(row.ts);
        enc.int8(row.seq);
        enc.text(&row.code);
        enc.text(row.status);
        enc.opt(row.spn, CopyEncoder::int4);
        enc.opt(row.fmi, CopyEncoder::int2);
        enc.opt(row.oc, CopyEncoder::int2);
        enc.opt(row.sa, CopyEncoder::int2);
        enc.opt(row.source, CopyEncoder::text);
    }
}

/// A report's ledger row for `COPY dtc_reports (vehicle_id, seq, ts, received_at, source,
/// mil, n_dtcs)`.
pub(super) fn encode_report(
    enc: &mut CopyEncoder,
    key: SampleKey,
    received_at: DateTime<Utc>,
    report: &DtcReport,
) {
    enc.row(7);
    enc.int4(key.0);
    enc.int8(key.1);
    enc.timestamptz(key.2);
    enc.timestamptz(received_at);
    enc.opt(report.source.as_deref(), CopyEncoder::text);
    enc.opt(report.mil, CopyEncoder::boolean);
    enc.int4(report.dtcs.len() as i32);
}

/// One entry of a DTC report, as `dtc_events` keeps it.
pub(super) struct EventRow<'a> {
    vehicle_id: i32,
    ts: DateTime<Utc>,
    seq: i64,
    code: String,
    status: &'static str,
    spn: Option<i32>,
    fmi: Option<i16>,
    oc: Option<i16>,
    sa: Option<i16>,
    source: Option<&'a str>,
}

impl EventRow<'_> {
    /// Whether two rows have the table's key (vehicle, code, ts, seq) in common.
    pub(super) fn same_key(&self, o: &EventRow<'_>) -> bool {
        (self.vehicle_id, &self.code, self.ts, self.seq) == (o.vehicle_id, &o.code, o.ts, o.seq)
    }
}

/// The events of `reports`, sorted by the table's key (vehicle, code, ts, seq).
pub(super) fn event_rows<'a>(reports: &[(i32, &'a DtcReport)]) -> Vec<EventRow<'a>> {
    let mut rows: Vec<EventRow<'a>> = reports
        .iter()
        .flat_map(|(vehicle_id, r)| {
            r.dtcs.iter().map(move |d| {
                let (spn, fmi, oc, sa) = j1939_parts(&d.code);
                EventRow {
                    vehicle_id: *vehicle_id,
                    ts: r.ts,
                    seq: r.seq,
                    code: d.code.key(),
                    status: d.status.as_str(),
                    spn,
                    fmi,
                    oc,
                    sa,
                    source: r.source.as_deref(),
                }
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.vehicle_id, &a.code, a.ts, a.seq).cmp(&(b.vehicle_id, &b.code, b.ts, b.seq))
    });
    rows
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

pub(super) async fn merge_dtc_lifecycles(
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
