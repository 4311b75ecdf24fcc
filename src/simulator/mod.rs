//! The fleet simulator (`aftercare simulate`): a seeded fleet whose ground truth is known.
//! Vehicles wear, develop faults with observable precursors and fail; workshops service and
//! repair them; telematics delivers their data with realistic flaws. Live mode publishes
//! through the broker and posts to the API; bulk mode writes years of the same history at
//! database speed. Also home of the fast message stream the ingest benchmarks use.
//!
//! ```text
//! fleet ─▶ vehicle (parts, diagnostics, workshop) ─▶ delivery ─▶ engine (clock, queue)
//!                                                                   ├─▶ live (broker, API)
//!                                                                   └─▶ bulk (store)
//! ```

pub mod bulk;
pub mod delivery;
mod diagnostics;
pub mod engine;
pub mod fleet;
pub mod hostile;
pub mod live;
pub mod parts;
mod progress;
mod publish;
pub mod rng;
mod stream;
pub mod summary;
pub mod truth;
pub mod vehicle;

pub use delivery::{Delivery, Realism};
pub use engine::{DayOutput, SimConfig, Simulation};
pub use progress::Progress;
pub use publish::{
    publish_all, publish_all_with, publish_stream, publish_stream_with, PublishError, PublishStats,
};
pub use stream::{owned, Fleet, Generated, Kind};
pub use summary::Summary;
pub use truth::Truth;

use crate::config::Config;
use crate::store::stats::BulkTable;
use crate::store::{self, Store, StoreError};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("API: {0}")]
    Api(String),
    #[error("{0}")]
    Invalid(String),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Vehicles in the fleet.
    #[arg(long, default_value_t = 20)]
    pub vehicles: usize,
    /// Simulated days.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// First simulated day (YYYY-MM-DD, UTC); default: so that the run ends today.
    #[arg(long)]
    pub start: Option<NaiveDate>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Home workshops WS-01..WS-NN.
    #[arg(long, default_value_t = 5)]
    pub workshops: usize,
    /// Write the history straight into the database (configured `database.url`) instead of
    /// publishing it live.
    #[arg(long)]
    pub bulk: bool,
    /// Bulk: how to store the history. `auto` takes the fast path (COPY straight into the
    /// tables, duplicates and rollup worked out in memory) when the database holds no history
    /// for the fleet's vehicles, and the exactly-once path (the ingest writer) otherwise;
    /// `fast` refuses a database with history for them.
    #[arg(long, value_enum, default_value_t = bulk::BulkPath::Auto)]
    pub bulk_path: bulk::BulkPath,
    /// Ground truth as JSON Lines (failures, then faults found early).
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Live: simulated seconds per wall-clock second (0: no pacing by simulated time).
    #[arg(long, default_value_t = 86_400.0)]
    pub compression: f64,
    /// Live: messages per second at most (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Live: stop after this many wall-clock seconds (0: run to the end).
    #[arg(long, default_value_t = 0.0)]
    pub duration: f64,
    /// Live: stop after this many messages (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub messages: u64,
    /// Live: API base URL for profiles and service records, e.g. http://127.0.0.1:8080.
    #[arg(long, requires = "api_key")]
    pub api_url: Option<String>,
    /// Live: API key with the admin scope (profiles) and advisor scope (service records).
    #[arg(long, env = "AFTERCARE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Live: MQTT client id of the publisher.
    #[arg(long, default_value = "aftercare-simulator")]
    pub client_id: String,
    /// Share of messages delivered twice.
    #[arg(long, default_value_t = 0.005)]
    pub duplicates: f64,
    /// Share of messages delayed minutes to hours in transit (out of order).
    #[arg(long, default_value_t = 0.01)]
    pub late: f64,
    /// Share of malformed payloads (dead letters).
    #[arg(long, default_value_t = 0.001)]
    pub malformed: f64,
    /// No coverage gaps (and so no store-and-forward batches).
    #[arg(long)]
    pub no_gaps: bool,
    /// No clock skew.
    #[arg(long)]
    pub no_skew: bool,
    /// Every delivery effect off: duplicates, delays, gaps, skew, malformed payloads.
    #[arg(long)]
    pub clean: bool,
}

impl SimulateArgs {
    pub fn realism(&self) -> Result<Realism, SimulateError> {
        for (name, share) in [
            ("--duplicates", self.duplicates),
            ("--late", self.late),
            ("--malformed", self.malformed),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(SimulateError::Invalid(format!(
                    "{name} must be a share between 0 and 1, got {share}"
                )));
            }
        }
        if self.clean {
            return Ok(Realism::NONE);
        }
        Ok(Realism {
            duplicates: self.duplicates,
            late: self.late,
            gaps: !self.no_gaps,
            skew: !self.no_skew,
            malformed: self.malformed,
        })
    }

    /// The simulation these arguments describe; `now` decides the default start and the
    /// check that the history does not run into the future (ingest would refuse it).
    pub fn sim_config(&self, now: DateTime<Utc>) -> Result<SimConfig, SimulateError> {
        if self.vehicles == 0 || self.vehicles > 10_000_000 {
            return Err(SimulateError::Invalid(format!(
                "--vehicles must be 1 to 10,000,000, got {}",
                self.vehicles
            )));
        }
        if self.days == 0 || self.days > 3650 {
            return Err(SimulateError::Invalid(format!(
                "--days must be 1 to 3650, got {}",
                self.days
            )));
        }
        if self.workshops == 0 || self.workshops > 99 {
            return Err(SimulateError::Invalid(format!(
                "--workshops must be 1 to 99, got {}",
                self.workshops
            )));
        }
        let today = now.date_naive();
        let start = self
            .start
            .unwrap_or(today - Duration::days(i64::from(self.days)));
        let end = start + Duration::days(i64::from(self.days));
        if end > today + Duration::days(1) {
            return Err(SimulateError::Invalid(format!(
                "the history would end on {end}, after today ({today}): ingest refuses data \
                 from the future; choose an earlier --start or fewer --days"
            )));
        }
        Ok(SimConfig {
            seed: self.seed,
            vehicles: self.vehicles,
            workshops: self.workshops,
            start: start.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
            days: self.days,
            realism: self.realism()?,
        })
    }
}

fn write_truth(path: &PathBuf, truth: &Truth) -> Result<(), SimulateError> {
    let io = |source| SimulateError::Io {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    truth.write_jsonl(std::io::BufWriter::new(file)).map_err(io)
}

/// `aftercare simulate`: runs live or bulk, writes the truth file, returns the summary text.
pub async fn run(config: &Config, args: &SimulateArgs) -> Result<String, SimulateError> {
    let sim_config = args.sim_config(Utc::now())?;
    let progress = Progress::new(sim_config.days, std::io::stderr().is_terminal());
    let (summary, truth, closing) = if args.bulk {
        let pool = store::pool(&config.database.url, 6).await?;
        store::migrate(&pool).await?;
        let store = std::sync::Arc::new(Store::open(pool).await?);
        let report = bulk::run_with(
            store.clone(),
            sim_config,
            args.bulk_path,
            config.ingest.write_method,
            config.limits(),
            &progress,
        )
        .await?;
        // The service plans its fleet queries with these at once, not after autovacuum.
        let bulk_tables = [
            BulkTable::Vehicles,
            BulkTable::VehicleProfiles,
            BulkTable::ServiceRecords,
        ];
        store::stats::keep_fresh(store.pool(), &bulk_tables).await;
        let secs = report.elapsed.as_secs_f64().max(1e-9);
        let closing = format!(
            "{} path: stored in {:.1}s: {} values ({:.0} values/s), {} messages ({:.0}/s), \
             {} duplicates, {} dead letters, {} new service records; rollup settled in {:.1}s",
            match report.path {
                bulk::BulkPath::Fast => "fast",
                _ => "exactly-once",
            },
            secs,
            report.stored.values,
            report.stored.values as f64 / secs,
            report.stored.messages_stored,
            report.stored.messages_stored as f64 / secs,
            report.stored.duplicates,
            report.stored.dead_letters,
            report.stored.records_created,
            report.rollup_elapsed.as_secs_f64(),
        );
        (report.summary, report.truth, closing)
    } else {
        let sim = Simulation::new(sim_config);
        let api = match (&args.api_url, &args.api_key) {
            (Some(url), Some(key)) => Some(live::ApiClient::new(url, key)),
            _ => {
                tracing::warn!("no --api-url/--api-key: profiles and service records are not sent");
                None
            }
        };
        let opts = live::LiveOptions {
            mqtt: config.mqtt.clone(),
            client_id: args.client_id.clone(),
            compression: if args.compression > 0.0 {
                args.compression
            } else {
                f64::INFINITY
            },
            rate: (args.rate > 0.0).then_some(args.rate),
            duration: (args.duration > 0.0)
                .then(|| std::time::Duration::from_secs_f64(args.duration)),
            max_messages: (args.messages > 0).then_some(args.messages),
            api,
        };
        let report = live::run(sim, opts, &progress).await?;
        let secs = report.publish.elapsed.as_secs_f64().max(1e-9);
        let closing = format!(
            "published {} messages, {} acknowledged, in {:.1}s ({:.0} msg/s); {} new service records",
            report.publish.sent,
            report.publish.acked,
            secs,
            report.publish.acked as f64 / secs,
            report.records_created,
        );
        (report.summary, report.truth, closing)
    };
    progress.finish("done");
    if let Some(path) = &args.truth {
        write_truth(path, &truth)?;
    }
    Ok(format!("{summary}\n{closing}"))
}
