//! `aftercare import …`: a fleet's history from files. Service records from a dealer
//! management system's CSV export (through a job-code mapping), vehicle profiles from a
//! register's CSV, diagnostic history (one fault code a row), and telemetry in long
//! (`vin,ts,signal,value`) or wide logger CSV (one column per PID, through a column mapping).
//! Files are read as a stream, in chunks, and every chunk goes through the store's own paths
//! (`insert_service_records`, `Store::write_batch` with its ledgers, rollup deltas and score
//! marks), so a re-run, or a run resumed after a stop, imports nothing twice. Rows that cannot
//! be read go to a rejects file with their line and reason; the rest are imported.

pub mod dtcs;
pub mod profiles;
pub mod service_records;
pub mod telemetry;

use crate::store::StoreError;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the rejects file {path}: {source}")]
    Rejects {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Data rows read (the header not counted).
    pub rows: u64,
    /// Rows (records, samples or values) stored now.
    pub imported: u64,
    /// Rows stored by an earlier run (or twice in the file).
    pub already: u64,
    /// Rows written to the rejects file.
    pub rejected: u64,
    /// Telemetry: values stored now.
    pub values: u64,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rows: {} imported, {} already there, {} rejected",
            self.rows, self.imported, self.already, self.rejected
        )?;
        if self.values > 0 {
            write!(f, " ({} values)", self.values)?;
        }
        Ok(())
    }
}

/// The rejects file: `line,reason,detail` (CSV), one row per refused input row.
pub struct Rejects {
    path: PathBuf,
    out: csv::Writer<std::fs::File>,
    pub count: u64,
}

impl Rejects {
    /// Creates (or empties) the rejects file; a re-run writes its own.
    pub fn create(path: &Path) -> Result<Rejects, ImportError> {
        let err = |source| ImportError::Rejects {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::create(path).map_err(err)?;
        let mut out = csv::Writer::from_writer(file);
        out.write_record(["line", "reason", "detail"])
            .map_err(|e| err(e.into()))?;
        Ok(Rejects {
            path: path.to_path_buf(),
            out,
            count: 0,
        })
    }

    pub fn reject(&mut self, line: u64, reason: &str, detail: &str) -> Result<(), ImportError> {
        self.count += 1;
        self.out
            .write_record([line.to_string().as_str(), reason, detail])
            .map_err(|e| ImportError::Rejects {
                path: self.path.display().to_string(),
                source: e.into(),
            })
    }

    pub fn finish(mut self) -> Result<u64, ImportError> {
        self.out.flush().map_err(|source| ImportError::Rejects {
            path: self.path.display().to_string(),
            source,
        })?;
        Ok(self.count)
    }
}

/// The rejects file beside `file` unless one is given: `FILE.rejects.csv`.
pub fn rejects_path(file: &Path, given: Option<&Path>) -> PathBuf {
    given.map(Path::to_path_buf).unwrap_or_else(|| {
        let mut name = file.as_os_str().to_owned();
        name.push(".rejects.csv");
        PathBuf::from(name)
    })
}

/// A refused row as an HTTP answer lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RowReject {
    /// 1-based line of the NDJSON body (or the CSV file).
    pub line: u64,
    pub reason: String,
    pub detail: String,
}

/// Where refused rows go: the rejects file (CLI) or a list (HTTP, capped).
pub enum Sink {
    File(Box<Rejects>),
    List { rejects: Vec<RowReject>, count: u64 },
}

/// Rejects an HTTP answer lists at most (all are counted).
pub const MAX_LISTED_REJECTS: usize = 1000;

impl Sink {
    pub fn list() -> Sink {
        Sink::List {
            rejects: Vec::new(),
            count: 0,
        }
    }

    pub fn reject(&mut self, line: u64, reason: &str, detail: &str) -> Result<(), ImportError> {
        match self {
            Sink::File(f) => f.reject(line, reason, detail),
            Sink::List { rejects, count } => {
                *count += 1;
                if rejects.len() < MAX_LISTED_REJECTS {
                    rejects.push(RowReject {
                        line,
                        reason: reason.to_owned(),
                        detail: detail.to_owned(),
                    });
                }
                Ok(())
            }
        }
    }

    /// How many rows were refused, and the listed ones.
    pub fn finish(self) -> Result<(u64, Vec<RowReject>), ImportError> {
        match self {
            Sink::File(f) => Ok((f.finish()?, Vec::new())),
            Sink::List { rejects, count } => Ok((count, rejects)),
        }
    }
}

/// The rows of an input as CSV records: a CSV file's, or NDJSON objects laid out in the
/// columns of `header` (a key outside it refuses the line).
pub enum Rows {
    Csv {
        reader: csv::Reader<std::fs::File>,
        bar: indicatif::ProgressBar,
        header: Vec<String>,
    },
    Json {
        header: Vec<String>,
        lines: std::vec::IntoIter<(u64, bytes::Bytes)>,
    },
}

/// One row: its line, and its record or why it cannot be read.
pub type Row = (u64, Result<(), String>);

impl Rows {
    /// A CSV file, its header read.
    pub fn csv(file: &Path, what: &'static str) -> Result<Rows, ImportError> {
        let (mut reader, bar) = open_csv(file)?;
        bar.set_message(what);
        let header = header_index(&mut reader, file)?;
        Ok(Rows::Csv {
            reader,
            bar,
            header,
        })
    }

    /// An NDJSON body: non-empty lines, each an object with keys among `header`.
    pub fn ndjson(body: &bytes::Bytes, header: &[&str]) -> Rows {
        let mut lines = Vec::new();
        let mut start = 0;
        let mut n = 1u64;
        for (i, b) in body.iter().enumerate() {
            if *b == b'\n' {
                lines.push((n, body.slice(start..i)));
                start = i + 1;
                n += 1;
            }
        }
        lines.push((n, body.slice(start..)));
        lines.retain(|(_, l)| l.iter().any(|b| !b.is_ascii_whitespace()));
        Rows::Json {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            lines: lines.into_iter(),
        }
    }

    pub fn header(&self) -> &[String] {
        match self {
            Rows::Csv { header, .. } | Rows::Json { header, .. } => header,
        }
    }

    /// The next row into `record`; None at the end.
    pub fn next(&mut self, record: &mut csv::StringRecord) -> Option<Row> {
        match self {
            Rows::Csv { reader, .. } => {
                let line = reader.position().line();
                match reader.read_record(record) {
                    Ok(false) => None,
                    Ok(true) => Some((record.position().map_or(line, |p| p.line()), Ok(()))),
                    Err(e) => Some((e.position().map_or(line, |p| p.line()), Err(e.to_string()))),
                }
            }
            Rows::Json { header, lines } => {
                let (n, line) = lines.next()?;
                Some((n, json_record(&line, header, record)))
            }
        }
    }

    /// Shows how far the input is read.
    pub fn progress(&self) {
        if let Rows::Csv { reader, bar, .. } = self {
            bar.set_position(reader.position().byte());
        }
    }

    pub fn done(&self) {
        if let Rows::Csv { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}

/// An NDJSON line as a record in `header`'s columns: text as is, numbers and booleans
/// written out, null or absent empty.
fn json_record(
    line: &[u8],
    header: &[String],
    record: &mut csv::StringRecord,
) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let serde_json::Value::Object(obj) = value else {
        return Err("a line must be a JSON object".into());
    };
    if let Some(k) = obj.keys().find(|k| !header.contains(k)) {
        return Err(format!(
            "unknown field {k:?} (fields: {})",
            header.join(", ")
        ));
    }
    record.clear();
    for h in header {
        let text = match obj.get(h) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(serde_json::Value::Bool(b)) => b.to_string(),
            Some(_) => return Err(format!("field {h:?} must be text, a number or a boolean")),
        };
        record.push_field(&text);
    }
    Ok(())
}

/// A CSV reader over `file` (headers on, rows of differing length allowed so each is
/// refused on its own), and a progress bar on stderr over its bytes.
pub fn open_csv(
    file: &Path,
) -> Result<(csv::Reader<std::fs::File>, indicatif::ProgressBar), ImportError> {
    let f = std::fs::File::open(file).map_err(|source| ImportError::Read {
        path: file.display().to_string(),
        source,
    })?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(f);
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    Ok((reader, bar))
}

/// The header, lower-cased, with each name's column.
pub fn header_index(
    reader: &mut csv::Reader<std::fs::File>,
    file: &Path,
) -> Result<Vec<String>, ImportError> {
    let headers = reader.headers().map_err(|e| ImportError::Invalid {
        path: file.display().to_string(),
        message: format!("cannot read the header: {e}"),
    })?;
    Ok(headers.iter().map(|h| h.trim().to_owned()).collect())
}
