//! Telemetry from files: long CSV (`vin,ts,signal,value`, one value a row) and wide logger
//! CSV as Torque Pro or ELM327 loggers write it (a time column and one column per PID, the
//! unit in the header), through a column mapping (`deploy/imports/torque.toml`). Every row
//! becomes a contract sample and goes through `Store::write_batch`: its key decides what is
//! new, so a re-run stores nothing twice, and the rollup and score marks follow as for
//! ingest.

use super::{rejects_path, ImportError, ImportReport, Rejects, Rows, Sink};
use crate::config::WriteMethod;
use crate::store::{BatchItem, Outcome, Store};
use crate::wire::{check_signal_name, Limits, Message, Sample, Vin};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

/// Rows per `write_batch`.
const CHUNK: usize = 5000;
/// Batches written at once while the next is read.
const IN_FLIGHT: usize = 2;

/// How a wide CSV's columns map to signals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WideMapping {
    /// The header of the time column.
    pub time_column: String,
    /// `rfc3339`, `epoch_ms`, `epoch_s`, or a chrono format read as UTC (e.g. Torque's
    /// `%d-%b-%Y %H:%M:%S%.f`).
    pub time_format: String,
    #[serde(rename = "column")]
    pub columns: Vec<ColumnMap>,
}

/// One column: `signal = value × scale + offset`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMap {
    pub header: String,
    pub signal: String,
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
}

fn one() -> f64 {
    1.0
}

impl WideMapping {
    pub fn from_file(path: &Path) -> Result<WideMapping, ImportError> {
        let invalid = |message: String| ImportError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let m: WideMapping = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        for c in &m.columns {
            check_signal_name(&c.signal).map_err(|e| invalid(e.detail))?;
            if !c.scale.is_finite() || !c.offset.is_finite() {
                return Err(invalid(format!(
                    "column {:?}: scale and offset must be finite",
                    c.header
                )));
            }
        }
        Ok(m)
    }

    fn time(&self, s: &str) -> Option<DateTime<Utc>> {
        match self.time_format.as_str() {
            "rfc3339" => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            "epoch_ms" => s
                .parse::<i64>()
                .ok()
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
            "epoch_s" => s
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && x.abs() < 1e13)
                .and_then(|x| {
                    Utc.timestamp_millis_opt((x * 1000.0).round() as i64)
                        .single()
                }),
            format => NaiveDateTime::parse_from_str(s, format)
                .ok()
                .map(|t| t.and_utc()),
        }
    }
}

/// Which layout a telemetry file has.
#[derive(Debug, Clone)]
pub enum Layout {
    /// `vin,ts,signal,value` (ts RFC 3339 or epoch ms).
    Long,
    /// A logger file of one vehicle.
    Wide { vin: Vin, mapping: WideMapping },
}

/// Imports `file`; refused rows go to `rejects` (default `FILE.rejects.csv`). Each stored
/// row counts as `imported`, each row stored before as `already`.
pub async fn import(
    store: Arc<Store>,
    file: &Path,
    layout: &Layout,
    limits: &Limits,
    rejects: Option<&Path>,
) -> Result<ImportReport, ImportError> {
    let mut rows = Rows::csv(file, "telemetry")?;
    let mut sink = Sink::File(Box::new(Rejects::create(&rejects_path(file, rejects))?));
    let what = file.display().to_string();
    let mut report = import_rows(store, &mut rows, layout, limits, &mut sink, &what).await?;
    report.rejected = sink.finish()?.0;
    Ok(report)
}

/// The columns of a long row (an NDJSON line's fields).
pub const LONG_COLUMNS: [&str; 4] = ["vin", "ts", "signal", "value"];

/// Imports `rows` (a CSV file's, an NDJSON body's) laid out as `layout`; refused rows go to
/// `rejects`. `what` names the input in errors.
pub async fn import_rows(
    store: Arc<Store>,
    rows: &mut Rows,
    layout: &Layout,
    limits: &Limits,
    rejects: &mut Sink,
    what: &str,
) -> Result<ImportReport, ImportError> {
    let header = rows.header().to_vec();
    let parse = RowParser::new(layout, &header, what)?;
    let mut report = ImportReport::default();
    let now = Utc::now();
    let window = limits.telemetry_window(now);
    let mut chunk: Vec<BatchItem> = Vec::with_capacity(CHUNK);
    let mut running: VecDeque<tokio::task::JoinHandle<Result<Counts, ImportError>>> =
        VecDeque::new();
    let mut record = csv::StringRecord::new();
    loop {
        let more = match rows.next(&mut record) {
            None => false,
            Some((line, Ok(()))) => {
                report.rows += 1;
                match parse.row(&record, header.len(), &window) {
                    Ok(message) => chunk.push(BatchItem::Message {
                        message,
                        received_at: now,
                    }),
                    Err((reason, detail)) => rejects.reject(line, reason, &detail)?,
                }
                true
            }
            Some((line, Err(e))) => {
                report.rows += 1;
                rejects.reject(line, "bad_row", &e)?;
                true
            }
        };
        if chunk.len() >= CHUNK || (!more && !chunk.is_empty()) {
            let items = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            let store = store.clone();
            running.push_back(tokio::spawn(async move { write(&store, items).await }));
            rows.progress();
        }
        while running.len() >= IN_FLIGHT || (!more && !running.is_empty()) {
            if let Some(task) = running.pop_front() {
                let counts = task.await.map_err(|e| ImportError::Invalid {
                    path: what.to_owned(),
                    message: format!("a write task failed: {e}"),
                })??;
                report.imported += counts.stored;
                report.already += counts.duplicate;
                report.values += counts.values;
            }
        }
        if !more {
            break;
        }
    }
    rows.done();
    // The daily rollup is current when the import returns.
    crate::store::fold_committed(store.pool()).await?;
    Ok(report)
}

#[derive(Debug, Default)]
struct Counts {
    stored: u64,
    duplicate: u64,
    values: u64,
}

async fn write(store: &Store, items: Vec<BatchItem>) -> Result<Counts, ImportError> {
    let result = store.write_batch(&items, WriteMethod::Copy).await?;
    let mut c = Counts {
        values: result.values_stored,
        ..Counts::default()
    };
    for o in result.outcomes {
        match o {
            Outcome::Stored => c.stored += 1,
            Outcome::Duplicate => c.duplicate += 1,
            Outcome::DeadLetter | Outcome::Ignored => {}
        }
    }
    Ok(c)
}

/// A row's refusal: reason and detail.
type Refusal = (&'static str, String);

enum RowParser<'a> {
    Long {
        vin: usize,
        ts: usize,
        signal: usize,
        value: usize,
    },
    Wide {
        vin: &'a Vin,
        mapping: &'a WideMapping,
        time: usize,
        /// (column, mapping) of each mapped column the file has.
        columns: Vec<(usize, &'a ColumnMap)>,
    },
}

impl<'a> RowParser<'a> {
    fn new(layout: &'a Layout, header: &[String], what: &str) -> Result<Self, ImportError> {
        let at = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
        let missing = |name: &str| ImportError::Invalid {
            path: what.to_owned(),
            message: format!("no column {name:?} in the header"),
        };
        Ok(match layout {
            Layout::Long => RowParser::Long {
                vin: at("vin").ok_or_else(|| missing("vin"))?,
                ts: at("ts").ok_or_else(|| missing("ts"))?,
                signal: at("signal").ok_or_else(|| missing("signal"))?,
                value: at("value").ok_or_else(|| missing("value"))?,
            },
            Layout::Wide { vin, mapping } => {
                let columns: Vec<(usize, &ColumnMap)> = mapping
                    .columns
                    .iter()
                    .filter_map(|c| at(&c.header).map(|i| (i, c)))
                    .collect();
                if columns.is_empty() {
                    return Err(ImportError::Invalid {
                        path: what.to_owned(),
                        message: "none of the mapping's columns is in the header".into(),
                    });
                }
                RowParser::Wide {
                    vin,
                    mapping,
                    time: at(&mapping.time_column).ok_or_else(|| missing(&mapping.time_column))?,
                    columns,
                }
            }
        })
    }

    fn row(
        &self,
        record: &csv::StringRecord,
        width: usize,
        window: &crate::wire::TimeWindow,
    ) -> Result<Message, Refusal> {
        if record.len() != width {
            return Err((
                "bad_row",
                format!("{} fields, the header has {width}", record.len()),
            ));
        }
        let get = |i: usize| record.get(i).unwrap_or("");
        match self {
            RowParser::Long {
                vin,
                ts,
                signal,
                value,
            } => {
                let vin = Vin::parse(get(*vin)).map_err(|e| ("invalid_vin", e.detail))?;
                let raw = get(*ts);
                let ts_value = match raw.parse::<i64>() {
                    Ok(ms) => serde_json::Value::from(ms),
                    Err(_) => serde_json::Value::from(raw),
                };
                let ts = crate::wire::parse_ts(Some(&ts_value), window)
                    .map_err(|e| (e.reason.as_str(), e.detail))?;
                let name = get(*signal);
                check_signal_name(name).map_err(|e| (e.reason.as_str(), e.detail))?;
                let raw = get(*value);
                let x = number(raw)
                    .ok_or_else(|| ("invalid_value", format!("value {raw:?} is not a number")))?;
                Ok(Message::Telemetry {
                    vin,
                    samples: vec![Sample {
                        // One sample per value: its signal is part of its identity, so rows
                        // of one instant need not be next to each other.
                        seq: signal_seq(name),
                        ts,
                        values: vec![(name.to_owned(), x)],
                    }],
                })
            }
            RowParser::Wide {
                vin,
                mapping,
                time,
                columns,
            } => {
                let raw = get(*time);
                let t = mapping.time(raw).ok_or_else(|| {
                    (
                        "invalid_timestamp",
                        format!("time {raw:?} does not read as {}", mapping.time_format),
                    )
                })?;
                let ms = serde_json::Value::from(t.timestamp_millis());
                let ts = crate::wire::parse_ts(Some(&ms), window)
                    .map_err(|e| (e.reason.as_str(), e.detail))?;
                let values: Vec<(String, f64)> = columns
                    .iter()
                    .filter_map(|(i, c)| {
                        number(get(*i)).map(|x| (c.signal.clone(), x * c.scale + c.offset))
                    })
                    .filter(|(_, x)| x.is_finite())
                    .collect();
                if values.is_empty() {
                    return Err(("no_values", "no mapped column holds a number".into()));
                }
                Ok(Message::Telemetry {
                    vin: (*vin).clone(),
                    samples: vec![Sample {
                        seq: ts.timestamp_millis().max(0),
                        ts,
                        values,
                    }],
                })
            }
        }
    }
}

/// A number; loggers write `-` or nothing for a PID not read.
fn number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// A signal's stable sequence number (FNV-1a, 63 bits): with the vehicle and time, a long
/// row's identity.
fn signal_seq(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 1) as i64
}
