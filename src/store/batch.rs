//! What the ingest write path is handed and what it reports, shared by the writer and its
//! telemetry, diagnostics and rollup parts (which depend on this module, never on each other's
//! orchestration): batch items, outcomes, the message keys, and the COPY helper.

use crate::wire::Message;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::HashSet;

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

/// The signal names the telemetry among `items` carries, repeats included.
pub fn signal_names(items: &[BatchItem]) -> impl Iterator<Item = &str> {
    items
        .iter()
        .filter_map(|i| match i {
            BatchItem::Message { message, .. } => message.samples(),
            _ => None,
        })
        .flatten()
        .flat_map(|s| s.values.iter().map(|(name, _)| name.as_str()))
}

/// The VINs of the messages among `items`, repeats included.
pub fn vins(items: &[BatchItem]) -> impl Iterator<Item = &str> {
    items.iter().filter_map(|i| match i {
        BatchItem::Message { message, .. } => Some(message.vin().as_str()),
        _ => None,
    })
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

impl BatchResult {
    /// Adds the result of a part of the batch written on its own (the one-by-one path).
    pub fn absorb(&mut self, part: BatchResult) {
        self.outcomes.extend(part.outcomes);
        self.values_stored += part.values_stored;
        self.samples_stored += part.samples_stored;
        self.dtc_reports_stored += part.dtc_reports_stored;
        self.dead_letters += part.dead_letters;
        self.stages.extend(part.stages);
    }
}

/// Lap timer for the stages of one batch write.
pub(super) struct Laps {
    last: std::time::Instant,
    pub(super) laps: Vec<(&'static str, std::time::Duration)>,
}

impl Laps {
    pub(super) fn start() -> Laps {
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

/// (vehicle, seq, ts): what identifies a sample (and a DTC report). `ts` is part of it so
/// that a sender whose counter restarts after a reboot is not taken for a redelivery.
pub(super) type SampleKey = (i32, i64, DateTime<Utc>);

/// Keys a batch claims, one lookup per sample: hashed like `IdMap`.
pub(super) type KeySet = HashSet<SampleKey, foldhash::fast::RandomState>;

pub(super) async fn copy_in(
    tx: &mut PgConnection,
    statement: &str,
    data: &[u8],
) -> Result<u64, super::StoreError> {
    let mut copy = tx.copy_in_raw(statement).await?;
    copy.send(data).await?;
    Ok(copy.finish().await?)
}
