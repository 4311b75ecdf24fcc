//! Diagnostic history from a CSV: one fault code a row, `vin, ts, code | spn+fmi, status`
//! and optionally `seq`, `oc`, `sa`, `source`, `mil`. The rows of one report (same vehicle,
//! time and `seq`) sit together, and the file is sorted by vehicle and time, as an export
//! writes it; each report goes through `Store::write_batch` under the report ledger, so a
//! re-run stores nothing twice and the DTC lifecycles come out as from live reports.

use super::{rejects_path, ImportError, ImportReport, Rejects, Rows, Sink};
use crate::config::WriteMethod;
use crate::store::{BatchItem, Outcome, Store};
use crate::wire::{
    check_j2012, parse_ts, Dtc, DtcCode, DtcReport, DtcStatus, Limits, Message, Vin,
};
use chrono::{DateTime, Utc};
use std::path::Path;
use std::sync::Arc;

/// Reports per `write_batch`.
const CHUNK: usize = 2000;

/// The columns a row may have.
pub const COLUMNS: [&str; 10] = [
    "vin", "ts", "seq", "code", "spn", "fmi", "oc", "sa", "status", "source",
];

type Refusal = (&'static str, String);

/// A report being gathered from consecutive rows.
struct Open {
    key: (String, i64, DateTime<Utc>),
    vin: Vin,
    source: Option<String>,
    dtcs: Vec<Dtc>,
}

/// Imports `file`; refused rows go to `rejects` (default `FILE.rejects.csv`). Rows count
/// one by one; `imported` and `already` count reports.
pub async fn import(
    store: Arc<Store>,
    file: &Path,
    limits: &Limits,
    rejects: Option<&Path>,
) -> Result<ImportReport, ImportError> {
    let mut rows = Rows::csv(file, "diagnostics")?;
    let mut sink = Sink::File(Box::new(Rejects::create(&rejects_path(file, rejects))?));
    let header = rows.header().to_vec();
    let at = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let cols: Vec<Option<usize>> = COLUMNS.iter().map(|c| at(c)).collect();
    if cols[0].is_none() || cols[1].is_none() || cols[8].is_none() {
        return Err(ImportError::Invalid {
            path: file.display().to_string(),
            message: "the header needs vin, ts, status and code (or spn and fmi)".into(),
        });
    }
    let now = Utc::now();
    let window = limits.telemetry_window(now);
    let mut report = ImportReport::default();
    let mut open: Option<Open> = None;
    let mut chunk: Vec<BatchItem> = Vec::with_capacity(CHUNK);
    let mut last: Option<(String, DateTime<Utc>)> = None;
    let mut record = csv::StringRecord::new();
    while let Some((line, read)) = rows.next(&mut record) {
        report.rows += 1;
        if let Err(e) = read {
            sink.reject(line, "bad_row", &e)?;
            continue;
        }
        let row = match read_row(&record, &cols, header.len(), &window) {
            Ok(row) => row,
            Err((reason, detail)) => {
                sink.reject(line, reason, &detail)?;
                continue;
            }
        };
        let (vin, seq, ts, dtc, source) = row;
        let key = (vin.as_str().to_owned(), seq, ts);
        if open.as_ref().is_some_and(|o| o.key == key) {
            if let Some(o) = open.as_mut() {
                o.dtcs.push(dtc);
            }
            continue;
        }
        // A new report: the file must go forward, or a report met again later would be
        // taken for a redelivery of the first.
        let order = (key.0.clone(), key.2);
        if last.as_ref().is_some_and(|l| order < *l) {
            sink.reject(
                line,
                "unsorted",
                "rows must be sorted by vin and ts, the rows of one report together",
            )?;
            continue;
        }
        last = Some(order);
        if let Some(o) = open.take() {
            chunk.push(item(o, now));
        }
        open = Some(Open {
            key,
            vin,
            source,
            dtcs: vec![dtc],
        });
        if chunk.len() >= CHUNK {
            write(&store, &mut chunk, &mut report).await?;
            rows.progress();
        }
    }
    if let Some(o) = open.take() {
        chunk.push(item(o, now));
    }
    write(&store, &mut chunk, &mut report).await?;
    rows.done();
    report.rejected = sink.finish()?.0;
    crate::store::fold_committed(store.pool()).await?;
    Ok(report)
}

fn item(o: Open, now: DateTime<Utc>) -> BatchItem {
    BatchItem::Message {
        message: Message::Dtc {
            vin: o.vin,
            report: DtcReport {
                seq: o.key.1,
                ts: o.key.2,
                source: o.source,
                mil: None,
                dtcs: o.dtcs,
            },
        },
        received_at: now,
    }
}

async fn write(
    store: &Store,
    chunk: &mut Vec<BatchItem>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    if chunk.is_empty() {
        return Ok(());
    }
    let result = store.write_batch(chunk, WriteMethod::Copy).await?;
    for o in result.outcomes {
        match o {
            Outcome::Stored => report.imported += 1,
            Outcome::Duplicate => report.already += 1,
            Outcome::DeadLetter | Outcome::Ignored => {}
        }
    }
    chunk.clear();
    Ok(())
}

type Row = (Vin, i64, DateTime<Utc>, Dtc, Option<String>);

fn read_row(
    record: &csv::StringRecord,
    cols: &[Option<usize>],
    width: usize,
    window: &crate::wire::TimeWindow,
) -> Result<Row, Refusal> {
    if record.len() != width {
        return Err((
            "bad_row",
            format!("{} fields, the header has {width}", record.len()),
        ));
    }
    let get = |k: usize| {
        cols.get(k)
            .copied()
            .flatten()
            .and_then(|i| record.get(i))
            .filter(|s| !s.is_empty())
    };
    let int = |k: usize, max: u64| -> Result<Option<u64>, Refusal> {
        get(k)
            .map(|s| match s.parse::<u64>() {
                Ok(v) if v <= max => Ok(v),
                _ => Err((
                    "dtc_out_of_range",
                    format!("{} {s:?} is not 0 to {max}", COLUMNS[k]),
                )),
            })
            .transpose()
    };
    let vin = Vin::parse(get(0).unwrap_or("")).map_err(|e| ("invalid_vin", e.detail))?;
    let raw = get(1).unwrap_or("");
    let ts_value = match raw.parse::<i64>() {
        Ok(ms) => serde_json::Value::from(ms),
        Err(_) => serde_json::Value::from(raw),
    };
    let ts = parse_ts(Some(&ts_value), window).map_err(|e| (e.reason.as_str(), e.detail))?;
    let seq = match get(2) {
        None => ts.timestamp_millis().max(0),
        Some(s) => s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or((
            "invalid_seq",
            format!("seq {s:?} is not a non-negative integer"),
        ))?,
    };
    let code = match (get(3), int(4, 524_287)?, int(5, 31)?) {
        (Some(code), None, None) => {
            let code = code.to_ascii_uppercase();
            check_j2012(&code).map_err(|e| (e.reason.as_str(), e.detail))?;
            DtcCode::J2012(code)
        }
        (None, Some(spn), Some(fmi)) => DtcCode::J1939 {
            spn: spn as u32,
            fmi: fmi as u8,
            oc: int(6, 126)?.map(|v| v as u8),
            sa: int(7, 255)?.map(|v| v as u8),
        },
        _ => {
            return Err((
                "invalid_dtc_code",
                "a row has a code (J2012) or spn and fmi (J1939), one of them".into(),
            ))
        }
    };
    let raw = get(8).unwrap_or("");
    let status = DtcStatus::parse(&raw.to_ascii_lowercase()).ok_or((
        "invalid_dtc_status",
        format!("status {raw:?} is not pending, confirmed, permanent, active or cleared"),
    ))?;
    let source = match get(9) {
        Some(s) if s.len() > 64 || s.contains('\0') => {
            return Err(("invalid_text", "source: at most 64 bytes, no NUL".into()))
        }
        other => other.map(str::to_owned),
    };
    Ok((vin, seq, ts, Dtc { code, status }, source))
}
