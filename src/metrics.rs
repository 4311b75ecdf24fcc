//! Prometheus metrics, one registry per service instance (no globals, so tests can run several
//! instances in one process). Names under `aftercare_`; the design's stable names are kept.

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub table: &'static str,
}

/// A TimescaleDB background job: `proc/hypertable`, e.g. `policy_compression/samples`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    pub job: String,
}

pub struct Metrics {
    registry: Registry,
    /// Offers entering each state (the design's `aftercare_offers_total{state}`).
    pub offers: Family<StateLabel, Counter>,
    pub outbox_delivered: Family<ChannelLabel, Counter>,
    pub outbox_failures: Family<ChannelLabel, Counter>,
    pub received: Counter,
    pub messages: Family<OutcomeLabel, Counter>,
    pub values: Counter,
    pub dead_letters: Family<ReasonLabel, Counter>,
    pub batch_messages: Histogram,
    pub flush_seconds: Histogram,
    pub stage_seconds: Family<StageLabel, Counter<f64, AtomicU64>>,
    pub ack_lag_seconds: Histogram,
    pub inflight: Gauge,
    pub mqtt_connected: Gauge,
    pub mqtt_connects: Counter,
    pub mqtt_session_lost: Counter,
    pub stale_acks_skipped: Counter,
    pub db_write_errors: Counter,
    pub rollup_deltas_folded: Counter,
    pub rollup_fold_seconds: Counter<f64, AtomicU64>,
    /// Bytes of payload received and not yet acknowledged (the ingest memory bound).
    pub inflight_bytes: Gauge,
    /// Unix time of the last successful storage maintenance round.
    pub storage_maintenance_ok: Gauge,
    pub storage_partitions_created: Counter,
    pub storage_partitions_dropped: Counter,
    pub storage_rows_expired: Family<TableLabel, Counter>,
    pub timescaledb_job_last_success: Family<JobLabel, Gauge>,
    pub timescaledb_job_failures: Family<JobLabel, Gauge>,
    pub timescaledb_job_next_start: Family<JobLabel, Gauge>,
    /// What in storage needs an operator now (readiness detail); empty when all is well.
    storage_problems: std::sync::Mutex<Vec<String>>,
    /// Scoring marks by what became of them: scored, or kept without a score and why.
    pub score_marks_released: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("aftercare");
        let m = Metrics {
            offers: Family::default(),
            outbox_delivered: Family::default(),
            outbox_failures: Family::default(),
            received: Counter::default(),
            messages: Family::default(),
            values: Counter::default(),
            dead_letters: Family::default(),
            batch_messages: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            flush_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            stage_seconds: Family::default(),
            ack_lag_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            inflight: Gauge::default(),
            mqtt_connected: Gauge::default(),
            mqtt_connects: Counter::default(),
            mqtt_session_lost: Counter::default(),
            stale_acks_skipped: Counter::default(),
            db_write_errors: Counter::default(),
            rollup_deltas_folded: Counter::default(),
            rollup_fold_seconds: Counter::default(),
            inflight_bytes: Gauge::default(),
            storage_maintenance_ok: Gauge::default(),
            storage_partitions_created: Counter::default(),
            storage_partitions_dropped: Counter::default(),
            storage_rows_expired: Family::default(),
            timescaledb_job_last_success: Family::default(),
            timescaledb_job_failures: Family::default(),
            timescaledb_job_next_start: Family::default(),
            storage_problems: std::sync::Mutex::new(Vec::new()),
            score_marks_released: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "ingest_received",
            "MQTT messages received (before parsing)",
            m.received.clone(),
        );
        registry.register(
            "ingest_messages",
            "MQTT messages by what became of them",
            m.messages.clone(),
        );
        registry.register("ingest_values", "Signal values stored", m.values.clone());
        registry.register(
            "dead_letters",
            "Messages dead-lettered, by reason",
            m.dead_letters.clone(),
        );
        registry.register(
            "ingest_batch_messages",
            "Messages per committed batch",
            m.batch_messages.clone(),
        );
        registry.register(
            "ingest_flush_seconds",
            "Time to write and commit one batch",
            m.flush_seconds.clone(),
        );
        registry.register(
            "ingest_stage_seconds",
            "Time spent in each stage of the batch writes (resolve, ledgers, values, marks, commit)",
            m.stage_seconds.clone(),
        );
        registry.register(
            "ingest_ack_lag_seconds",
            "Time from receiving a message to acknowledging it",
            m.ack_lag_seconds.clone(),
        );
        registry.register(
            "ingest_inflight_messages",
            "Messages received and not yet acknowledged",
            m.inflight.clone(),
        );
        registry.register(
            "mqtt_connected",
            "1 while connected to the broker",
            m.mqtt_connected.clone(),
        );
        registry.register(
            "mqtt_connects",
            "Successful broker connections",
            m.mqtt_connects.clone(),
        );
        registry.register(
            "mqtt_sessions_lost",
            "Connections on which the broker had no session for us",
            m.mqtt_session_lost.clone(),
        );
        registry.register(
            "ingest_stale_acks_skipped",
            "Acknowledgements not sent because the connection they belonged to was gone",
            m.stale_acks_skipped.clone(),
        );
        registry.register(
            "ingest_write_errors",
            "Failed batch writes (retried)",
            m.db_write_errors.clone(),
        );
        registry.register("offers", "Offers entering each state", m.offers.clone());
        registry.register(
            "outbox_delivered",
            "Notifications delivered, by channel",
            m.outbox_delivered.clone(),
        );
        registry.register(
            "outbox_failures",
            "Failed notification attempts (retried with backoff), by channel",
            m.outbox_failures.clone(),
        );
        registry.register(
            "rollup_deltas_folded",
            "Rollup deltas (one per batch) folded into signal_daily",
            m.rollup_deltas_folded.clone(),
        );
        registry.register(
            "rollup_fold_seconds",
            "Time spent folding rollup deltas into signal_daily",
            m.rollup_fold_seconds.clone(),
        );
        registry.register(
            "ingest_inflight_bytes",
            "Payload bytes received and not yet acknowledged (bounded by ingest.max_inflight_bytes)",
            m.inflight_bytes.clone(),
        );
        registry.register(
            "storage_maintenance_last_success_timestamp_seconds",
            "Unix time of the last successful storage maintenance round (partitions, retention)",
            m.storage_maintenance_ok.clone(),
        );
        registry.register(
            "storage_partitions_created",
            "Time partitions created ahead (plain PostgreSQL)",
            m.storage_partitions_created.clone(),
        );
        registry.register(
            "storage_partitions_dropped",
            "Time partitions or chunks dropped past retention",
            m.storage_partitions_dropped.clone(),
        );
        registry.register(
            "storage_rows_expired",
            "Rows deleted past retention, by table",
            m.storage_rows_expired.clone(),
        );
        registry.register(
            "timescaledb_job_last_success_timestamp_seconds",
            "Unix time of the last successful run of a TimescaleDB job (0: never)",
            m.timescaledb_job_last_success.clone(),
        );
        registry.register(
            "timescaledb_job_failures",
            "Failed runs of a TimescaleDB job in all (job_stats.total_failures)",
            m.timescaledb_job_failures.clone(),
        );
        registry.register(
            "timescaledb_job_next_start_timestamp_seconds",
            "Unix time of a TimescaleDB job's next scheduled run",
            m.timescaledb_job_next_start.clone(),
        );
        registry.register(
            "score_marks_released",
            "Scoring marks released by the scoring worker, by reason: scored, or kept without \
             a score (no_recent_data, no_vehicle) until new data comes",
            m.score_marks_released.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn set_storage_problems(&self, problems: Vec<String>) {
        *self
            .storage_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = problems;
    }

    /// What in storage needs an operator now; empty when all is well.
    pub fn storage_problems(&self) -> Vec<String> {
        self.storage_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn offer_entered(&self, state: &'static str) {
        self.offers.get_or_create(&StateLabel { state }).inc();
    }

    pub fn score_marks_released(&self, reason: &str, n: u64) {
        self.score_marks_released
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
