//! Service records from a dealer management system's CSV export. Each row is one job line of
//! a repair order: `ro_number, line?, vin, date, odometer_km, job_code, workshop?, parts?,
//! notes?` (header names, any order, any case). A job-code mapping (TOML) turns the DMS's
//! codes into Aftercare's component, record kind and job; the record's identity is
//! `(source, ro_number/line)`, so re-running the import stores nothing twice.

use super::{open_csv, rejects_path, ImportError, ImportReport, Rejects};
use crate::component::Component;
use crate::store::service_records::{insert_service_records, NewServiceRecord, ServiceKind};
use crate::wire::Vin;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use sqlx::PgPool;
use std::collections::HashMap;
use std::path::Path;

/// Records per insert.
const CHUNK: usize = 1000;

/// The DMS's job codes, as `deploy/imports/dms-jobs.toml` writes them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobMap {
    /// The dealer system: with `ro_number/line`, a record's identity.
    pub source: String,
    pub jobs: HashMap<String, JobCode>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobCode {
    pub component: Component,
    pub kind: ServiceKind,
    /// Aftercare's job code (the catalogue's), e.g. `brake_pads_front`.
    pub job: String,
}

impl JobMap {
    pub fn from_file(path: &Path) -> Result<JobMap, ImportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let map: JobMap = toml::from_str(&text).map_err(|e| ImportError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if map.source.is_empty() || map.source.len() > 100 {
            return Err(ImportError::Invalid {
                path: path.display().to_string(),
                message: "source must be 1 to 100 characters".into(),
            });
        }
        Ok(map)
    }
}

/// A row that cannot be imported: why (`reason`) and what exactly.
struct Refusal(&'static str, String);

/// The columns a row is read by.
struct Columns {
    ro: usize,
    line: Option<usize>,
    vin: usize,
    date: usize,
    odometer: usize,
    job_code: usize,
    workshop: Option<usize>,
    parts: Option<usize>,
    notes: Option<usize>,
}

impl Columns {
    fn find(header: &[String], file: &Path) -> Result<Columns, ImportError> {
        let at = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
        let need = |name: &str| {
            at(name).ok_or_else(|| ImportError::Invalid {
                path: file.display().to_string(),
                message: format!(
                    "no column {name:?} (the header needs ro_number, vin, date, odometer_km, \
                     job_code; line, workshop, parts, notes are optional)"
                ),
            })
        };
        Ok(Columns {
            ro: need("ro_number")?,
            line: at("line"),
            vin: need("vin")?,
            date: need("date")?,
            odometer: need("odometer_km")?,
            job_code: need("job_code")?,
            workshop: at("workshop"),
            parts: at("parts"),
            notes: at("notes"),
        })
    }
}

/// Imports `file`; refused rows go to `rejects` (default `FILE.rejects.csv`).
pub async fn import(
    pool: &PgPool,
    file: &Path,
    jobs: &JobMap,
    rejects: Option<&Path>,
) -> Result<ImportReport, ImportError> {
    let (mut reader, bar) = open_csv(file)?;
    bar.set_message("service records");
    let header = super::header_index(&mut reader, file)?;
    let cols = Columns::find(&header, file)?;
    let mut rejects = Rejects::create(&rejects_path(file, rejects))?;
    let mut report = ImportReport::default();
    let now = Utc::now();
    let mut chunk: Vec<NewServiceRecord> = Vec::with_capacity(CHUNK);
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                report.rows += 1;
                let line = record.position().map_or(line, |p| p.line());
                match read_row(&record, &cols, header.len(), jobs, now) {
                    Ok(r) => chunk.push(r),
                    Err(Refusal(reason, detail)) => rejects.reject(line, reason, &detail)?,
                }
            }
            Err(e) => {
                report.rows += 1;
                let line = e.position().map_or(line, |p| p.line());
                rejects.reject(line, "bad_row", &e.to_string())?;
            }
        }
        if chunk.len() >= CHUNK {
            store(pool, &mut chunk, &mut report).await?;
            bar.set_position(reader.position().byte());
        }
    }
    store(pool, &mut chunk, &mut report).await?;
    bar.finish_and_clear();
    report.rejected = rejects.finish()?;
    Ok(report)
}

async fn store(
    pool: &PgPool,
    chunk: &mut Vec<NewServiceRecord>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    for stored in insert_service_records(pool, chunk).await? {
        if stored.created {
            report.imported += 1;
        } else {
            report.already += 1;
        }
    }
    chunk.clear();
    Ok(())
}

fn field<'a>(record: &'a csv::StringRecord, i: usize, name: &str) -> Result<&'a str, Refusal> {
    match record.get(i) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(Refusal("missing_field", format!("{name} is empty"))),
    }
}

fn text(s: &str, name: &str, max: usize) -> Result<String, Refusal> {
    if s.contains('\0') {
        return Err(Refusal("invalid_text", format!("{name} holds a NUL")));
    }
    if s.chars().count() > max {
        return Err(Refusal(
            "too_long",
            format!("{name} is longer than {max} characters"),
        ));
    }
    Ok(s.to_owned())
}

fn read_row(
    record: &csv::StringRecord,
    cols: &Columns,
    width: usize,
    jobs: &JobMap,
    now: DateTime<Utc>,
) -> Result<NewServiceRecord, Refusal> {
    if record.len() != width {
        return Err(Refusal(
            "bad_row",
            format!("{} fields, the header has {width}", record.len()),
        ));
    }
    let ro = text(field(record, cols.ro, "ro_number")?, "ro_number", 150)?;
    let line = match cols.line {
        Some(i) => text(field(record, i, "line")?, "line", 40)?,
        None => "1".to_owned(),
    };
    let vin = field(record, cols.vin, "vin")?;
    let vin = Vin::parse(vin).map_err(|e| Refusal("invalid_vin", e.detail))?;
    let performed_at = parse_date(field(record, cols.date, "date")?, now)?;
    let raw = field(record, cols.odometer, "odometer_km")?;
    let odometer_km = match raw.parse::<f64>() {
        Ok(x) if x.is_finite() && (0.0..=5_000_000.0).contains(&x) => x,
        _ => {
            return Err(Refusal(
                "invalid_odometer",
                format!("odometer_km {raw:?} is not a distance of 0 to 5,000,000 km"),
            ))
        }
    };
    let code = field(record, cols.job_code, "job_code")?;
    let Some(job) = jobs.jobs.get(code) else {
        return Err(Refusal(
            "unknown_job_code",
            format!("job code {code:?} is not in the job mapping"),
        ));
    };
    let optional = |i: Option<usize>, name: &str, max: usize| -> Result<Option<String>, Refusal> {
        match i.and_then(|i| record.get(i)).filter(|s| !s.is_empty()) {
            Some(s) => text(s, name, max).map(Some),
            None => Ok(None),
        }
    };
    let workshop = optional(cols.workshop, "workshop", 64)?;
    let parts = optional(cols.parts, "parts", 1000)?;
    let notes = optional(cols.notes, "notes", 3000)?;
    let notes = match (parts, notes) {
        (Some(p), Some(n)) => Some(format!("{n} (parts: {p})")),
        (Some(p), None) => Some(format!("parts: {p}")),
        (None, n) => n,
    };
    Ok(NewServiceRecord {
        vin: vin.as_str().to_owned(),
        source: jobs.source.clone(),
        external_id: format!("{ro}/{line}"),
        performed_at,
        odometer_km: Some(odometer_km),
        workshop,
        component: job.component,
        kind: job.kind,
        job: job.job.clone(),
        notes,
    })
}

/// `YYYY-MM-DD` (midnight UTC), `YYYY-MM-DD HH:MM:SS` (UTC) or RFC 3339, between 1980 and
/// tomorrow.
fn parse_date(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Refusal> {
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
        .ok_or_else(|| {
            Refusal(
                "invalid_date",
                format!("date {s:?} is not YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or RFC 3339"),
            )
        })?;
    let earliest = Utc.with_ymd_and_hms(1980, 1, 1, 0, 0, 0).single();
    if earliest.is_some_and(|e| t < e) || t > now + Duration::days(1) {
        return Err(Refusal(
            "invalid_date",
            format!("date {s} is not between 1980 and tomorrow"),
        ));
    }
    Ok(t)
}
