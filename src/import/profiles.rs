//! Vehicle profiles from a register's CSV: `vin, make?, model?, model_year?, powertrain?,
//! home_workshop?, owner_ref?, offers_consent?` (header names, any order, any case). Each row
//! replaces its vehicle's profile as `PUT /v1/vehicles/{vin}` does, so a re-run changes
//! nothing; a home workshop that does not exist refuses the row.

use super::{rejects_path, ImportError, ImportReport, Rejects, Rows, Sink};
use crate::store::capacity::workshop_by_code;
use crate::store::profiles::{upsert_profiles, Powertrain, Profile};
use crate::wire::Vin;
use sqlx::PgPool;
use std::collections::HashMap;
use std::path::Path;

/// Profiles per upsert.
const CHUNK: usize = 2000;

/// The columns a row may have (an NDJSON line's fields).
pub const COLUMNS: [&str; 8] = [
    "vin",
    "make",
    "model",
    "model_year",
    "powertrain",
    "home_workshop",
    "owner_ref",
    "offers_consent",
];

/// Imports `file`; refused rows go to `rejects` (default `FILE.rejects.csv`). A row for a
/// vehicle new to the store counts as `imported`, one for a known vehicle as `already`
/// (its profile replaced by the row).
pub async fn import(
    pool: &PgPool,
    file: &Path,
    rejects: Option<&Path>,
) -> Result<ImportReport, ImportError> {
    let mut rows = Rows::csv(file, "profiles")?;
    let mut sink = Sink::File(Box::new(Rejects::create(&rejects_path(file, rejects))?));
    let mut report = import_rows(pool, &mut rows, &mut sink, &file.display().to_string()).await?;
    report.rejected = sink.finish()?.0;
    Ok(report)
}

/// Imports `rows` (a CSV file's, an NDJSON body's); refused rows go to `rejects`. `what`
/// names the input in errors.
pub async fn import_rows(
    pool: &PgPool,
    rows: &mut Rows,
    rejects: &mut Sink,
    what: &str,
) -> Result<ImportReport, ImportError> {
    let header = rows.header().to_vec();
    let cols: Vec<Option<usize>> = COLUMNS
        .iter()
        .map(|c| header.iter().position(|h| h.eq_ignore_ascii_case(c)))
        .collect();
    if cols[0].is_none() {
        return Err(ImportError::Invalid {
            path: what.to_owned(),
            message: format!("no column \"vin\" (columns: {})", COLUMNS.join(", ")),
        });
    }
    let mut report = ImportReport::default();
    let mut workshops: HashMap<String, bool> = HashMap::new();
    let mut chunk: Vec<(String, Profile)> = Vec::with_capacity(CHUNK);
    let mut record = csv::StringRecord::new();
    while let Some((line, read)) = rows.next(&mut record) {
        report.rows += 1;
        match read {
            Ok(()) => match read_row(&record, &cols, header.len()) {
                Ok((vin, profile)) => {
                    let known = match &profile.home_workshop {
                        None => true,
                        Some(code) => match workshops.get(code) {
                            Some(k) => *k,
                            None => {
                                let k = workshop_by_code(pool, code).await?.is_some();
                                workshops.insert(code.clone(), k);
                                k
                            }
                        },
                    };
                    if known {
                        chunk.push((vin, profile));
                    } else {
                        rejects.reject(
                            line,
                            "unknown_workshop",
                            &format!(
                                "home_workshop {:?} is no workshop",
                                profile.home_workshop.unwrap_or_default()
                            ),
                        )?;
                    }
                }
                Err((reason, detail)) => rejects.reject(line, reason, &detail)?,
            },
            Err(e) => rejects.reject(line, "bad_row", &e)?,
        }
        if chunk.len() >= CHUNK {
            store(pool, &mut chunk, &mut report).await?;
            rows.progress();
        }
    }
    store(pool, &mut chunk, &mut report).await?;
    rows.done();
    Ok(report)
}

async fn store(
    pool: &PgPool,
    chunk: &mut Vec<(String, Profile)>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    for created in upsert_profiles(pool, chunk).await? {
        if created {
            report.imported += 1;
        } else {
            report.already += 1;
        }
    }
    chunk.clear();
    Ok(())
}

type Refusal = (&'static str, String);

fn read_row(
    record: &csv::StringRecord,
    cols: &[Option<usize>],
    width: usize,
) -> Result<(String, Profile), Refusal> {
    if record.len() != width {
        return Err((
            "bad_row",
            format!("{} fields, the header has {width}", record.len()),
        ));
    }
    let get = |k: usize| -> Result<Option<&str>, Refusal> {
        match cols
            .get(k)
            .copied()
            .flatten()
            .and_then(|i| record.get(i))
            .filter(|s| !s.is_empty())
        {
            Some(s) if s.contains('\0') => {
                Err(("invalid_text", format!("{} holds a NUL", COLUMNS[k])))
            }
            other => Ok(other),
        }
    };
    let text = |k: usize, max: usize| -> Result<Option<String>, Refusal> {
        match get(k)? {
            Some(s) if s.chars().count() > max => Err((
                "too_long",
                format!("{} is longer than {max} characters", COLUMNS[k]),
            )),
            other => Ok(other.map(str::to_owned)),
        }
    };
    let vin = get(0)?.ok_or(("missing_field", "vin is empty".to_owned()))?;
    let vin = Vin::parse(vin).map_err(|e| ("invalid_vin", e.detail))?;
    let model_year = match get(3)? {
        None => None,
        Some(s) => match s.parse::<i16>() {
            Ok(y) if (1980..=2100).contains(&y) => Some(y),
            _ => {
                return Err((
                    "invalid_field",
                    format!("model_year {s:?} is not a year from 1980 to 2100"),
                ))
            }
        },
    };
    let powertrain = get(4)?
        .map(|s| s.to_ascii_lowercase().parse::<Powertrain>())
        .transpose()
        .map_err(|e| ("invalid_field", e))?;
    let offers_consent = match get(7)?.map(str::to_ascii_lowercase).as_deref() {
        // PostgreSQL's COPY writes booleans as t/f.
        None | Some("true" | "t" | "yes" | "y" | "1") => true,
        Some("false" | "f" | "no" | "n" | "0") => false,
        Some(other) => {
            return Err((
                "invalid_field",
                format!("offers_consent {other:?} is not true/false, t/f, yes/no or 1/0"),
            ))
        }
    };
    Ok((
        vin.as_str().to_owned(),
        Profile {
            make: text(1, 100)?,
            model: text(2, 100)?,
            model_year,
            powertrain,
            home_workshop: text(5, 64)?,
            owner_ref: text(6, 200)?,
            offers_consent,
        },
    ))
}
