//! Ground truth: every failure (when, at what odometer, when its precursors began, why, when
//! it was repaired) and every fault found early at a workshop (those prevented a failure, so an
//! evaluation must know them), and components still degrading when the run ended. Written as
//! JSON Lines, ordered by time, then VIN.

use crate::component::Component;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use std::io::Write;

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn rfc3339_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// One failure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureTruth {
    /// Always "failure".
    pub event: &'static str,
    pub vin: String,
    pub component: Component,
    #[serde(serialize_with = "rfc3339")]
    pub failed_at: DateTime<Utc>,
    pub odometer_km: f64,
    /// When the precursors began; null for a failure without warning.
    #[serde(serialize_with = "rfc3339_opt")]
    pub precursor_start: Option<DateTime<Utc>>,
    pub cause: String,
    /// Null when the run ended before the repair.
    #[serde(serialize_with = "rfc3339_opt")]
    pub repaired_at: Option<DateTime<Utc>>,
}

/// One fault or worn part found and fixed before it failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreventiveTruth {
    /// Always "preventive".
    pub event: &'static str,
    pub vin: String,
    pub component: Component,
    #[serde(serialize_with = "rfc3339")]
    pub found_at: DateTime<Utc>,
    pub odometer_km: f64,
    #[serde(serialize_with = "rfc3339_opt")]
    pub precursor_start: Option<DateTime<Utc>>,
    pub cause: String,
    pub job: &'static str,
    /// Why the car was at the workshop: routine, warning (the owner reacted to a warning
    /// light) or repair (in for another failure).
    pub visit: &'static str,
}

/// A component still degrading when the run ended: precursors began, but it neither failed
/// nor was fixed (censored). An alarm on it is early, not false.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DegradedTruth {
    /// Always "degraded".
    pub event: &'static str,
    pub vin: String,
    pub component: Component,
    #[serde(serialize_with = "rfc3339")]
    pub precursor_start: DateTime<Utc>,
    /// The end of the run.
    #[serde(serialize_with = "rfc3339")]
    pub as_of: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Truth {
    pub failures: Vec<FailureTruth>,
    pub preventive: Vec<PreventiveTruth>,
    pub degraded: Vec<DegradedTruth>,
}

impl Truth {
    /// Orders events by time, then VIN, then component.
    pub fn sort(&mut self) {
        self.failures.sort_by(|a, b| {
            (a.failed_at, &a.vin, a.component).cmp(&(b.failed_at, &b.vin, b.component))
        });
        self.preventive.sort_by(|a, b| {
            (a.found_at, &a.vin, a.component).cmp(&(b.found_at, &b.vin, b.component))
        });
        self.degraded.sort_by(|a, b| {
            (a.precursor_start, &a.vin, a.component).cmp(&(b.precursor_start, &b.vin, b.component))
        });
    }

    /// Failures, then preventive finds, then components left degrading; one JSON object a
    /// line.
    pub fn write_jsonl(&self, mut w: impl Write) -> std::io::Result<()> {
        for f in &self.failures {
            serde_json::to_writer(&mut w, f)?;
            w.write_all(b"\n")?;
        }
        for p in &self.preventive {
            serde_json::to_writer(&mut w, p)?;
            w.write_all(b"\n")?;
        }
        for d in &self.degraded {
            serde_json::to_writer(&mut w, d)?;
            w.write_all(b"\n")?;
        }
        w.flush()
    }
}
