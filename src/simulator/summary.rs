//! The closing summary of a run: what was sent (messages, values, reports, duplicates,
//! store-and-forward arrays, payloads that will be dead letters), what broke and what the
//! workshops did. Counted from what a run actually sent, so it can be checked against what
//! the database stored.

use super::delivery::Delivery;
use super::stream::Kind;
use super::truth::Truth;
use crate::component::Component;
use crate::store::service_records::NewServiceRecord;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub vehicles: usize,
    pub days: u32,
    /// Every delivery, duplicates and malformed ones included.
    pub messages: u64,
    pub duplicates: u64,
    /// Malformed payloads: each becomes a dead letter.
    pub dead_letters_expected: u64,
    /// Telemetry samples and values in well-formed first copies (what the database keeps).
    pub samples: u64,
    pub values: u64,
    pub store_and_forward_arrays: u64,
    pub dtc_reports: u64,
    pub dtc_entries: u64,
    pub failures: BTreeMap<Component, u64>,
    pub failures_without_warning: u64,
    pub preventive: BTreeMap<Component, u64>,
    pub records: BTreeMap<&'static str, u64>,
}

impl Summary {
    pub fn add_delivery(&mut self, d: &Delivery) {
        self.messages += 1;
        if d.duplicate {
            self.duplicates += 1;
            return;
        }
        if d.malformed {
            self.dead_letters_expected += 1;
            return;
        }
        let m = &d.message;
        self.samples += m.samples as u64;
        self.values += m.values as u64;
        match m.kind {
            Kind::TelemetryBatch => self.store_and_forward_arrays += 1,
            Kind::Dtc => {
                self.dtc_reports += 1;
                self.dtc_entries += m.dtcs as u64;
            }
            Kind::Telemetry => {}
        }
    }

    pub fn add_records(&mut self, records: &[NewServiceRecord]) {
        for r in records {
            *self.records.entry(r.kind.as_str()).or_default() += 1;
        }
    }

    pub fn add_truth(&mut self, truth: &Truth) {
        for f in &truth.failures {
            *self.failures.entry(f.component).or_default() += 1;
            if f.precursor_start.is_none() {
                self.failures_without_warning += 1;
            }
        }
        for p in &truth.preventive {
            *self.preventive.entry(p.component).or_default() += 1;
        }
    }

    /// Adds the counts of another part of the same run (vehicles and days are the run's).
    pub fn absorb(&mut self, o: &Summary) {
        self.messages += o.messages;
        self.duplicates += o.duplicates;
        self.dead_letters_expected += o.dead_letters_expected;
        self.samples += o.samples;
        self.values += o.values;
        self.store_and_forward_arrays += o.store_and_forward_arrays;
        self.dtc_reports += o.dtc_reports;
        self.dtc_entries += o.dtc_entries;
        for (k, n) in &o.failures {
            *self.failures.entry(*k).or_default() += n;
        }
        self.failures_without_warning += o.failures_without_warning;
        for (k, n) in &o.preventive {
            *self.preventive.entry(*k).or_default() += n;
        }
        for (k, n) in &o.records {
            *self.records.entry(k).or_default() += n;
        }
    }

    pub fn service_records(&self) -> u64 {
        self.records.values().sum()
    }
}

fn per_component(map: &BTreeMap<Component, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "vehicles:            {}", self.vehicles)?;
        writeln!(f, "days:                {}", self.days)?;
        writeln!(
            f,
            "messages:            {} ({} duplicates, {} store-and-forward arrays)",
            self.messages, self.duplicates, self.store_and_forward_arrays
        )?;
        writeln!(f, "samples / values:    {} / {}", self.samples, self.values)?;
        writeln!(
            f,
            "DTC reports:         {} ({} entries)",
            self.dtc_reports, self.dtc_entries
        )?;
        writeln!(f, "dead letters expected: {}", self.dead_letters_expected)?;
        let failures: u64 = self.failures.values().sum();
        writeln!(
            f,
            "failures:            {failures} ({} without warning): {}",
            self.failures_without_warning,
            per_component(&self.failures)
        )?;
        writeln!(
            f,
            "found early:         {}",
            per_component(&self.preventive)
        )?;
        let records = self
            .records
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        write!(
            f,
            "service records:     {} ({records})",
            self.service_records()
        )
    }
}
