//! Typed configuration: defaults, then an optional TOML file, then `AFTERCARE_*` environment
//! variables (`AFTERCARE_<SECTION>_<KEY>`, e.g. `AFTERCARE_INGEST_BATCH_MAX_MESSAGES`).

use crate::secret::{redact_url, Secret};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
    #[error(
        "environment variable {var} does not name a setting (expected AFTERCARE_<SECTION>_<KEY>)"
    )]
    UnknownEnv { var: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error(transparent)]
    SecretFile(#[from] crate::secret::SecretFileError),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub mqtt: MqttConfig,
    pub http: HttpConfig,
    pub ingest: IngestConfig,
    pub log: LogConfig,
    pub model: ModelConfig,
    pub offers: OffersConfig,
    pub notify: NotifyConfig,
    pub storage: StorageConfig,
    pub traccar: TraccarConfig,
    pub feeds: FeedsConfig,
}

/// Other JSON feeds (`[feeds]`): mapping files, each a topic filter with where the vehicle,
/// time, values and fault codes are (`deploy/feeds/*.toml`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedsConfig {
    pub mappings: Vec<PathBuf>,
}

/// Traccar's forwarded positions (`[traccar]`): the MQTT topic Traccar's `forward.type = mqtt`
/// publishes to. Positions also arrive over HTTP at `POST /v1/ingest/traccar`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraccarConfig {
    /// MQTT topic filter ingest subscribes to for positions; empty: none.
    pub topic: String,
}

impl Default for TraccarConfig {
    fn default() -> Self {
        TraccarConfig {
            topic: "traccar/positions".into(),
        }
    }
}

/// Storage policy (`[storage]`): chunk widths, retention, compression, and the bounds on
/// distinct signals. `aftercare migrate` and `serve` record it in the database
/// (`storage_policy`), which every process then follows.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Width of a time partition (plain PostgreSQL) or chunk (TimescaleDB) of the sample
    /// table. A kept (generic) plan covers every partition at each call, so more of them cost
    /// reads. Fleets that send often want narrower ones: TimescaleDB advises that the recent
    /// chunks of all hypertables fit in a quarter of the memory.
    pub chunk_days: i32,
    /// The same for the DTC ledgers.
    pub dtc_chunk_days: i32,
    /// Samples (and the daily rollup) older than this are dropped, and refused on arrival.
    pub retention_days: i32,
    pub dtc_retention_days: i32,
    pub dead_letter_retention_days: i32,
    /// TimescaleDB (Timescale licence): chunks older than this are compressed.
    pub compress_after_days: i32,
    /// Plain PostgreSQL: partitions exist this far ahead.
    pub ahead_days: i32,
    /// How often partitions, retention and TimescaleDB's jobs are seen to (0: never here).
    pub maintenance_interval_secs: u64,
    /// Readiness fails when maintenance, or a TimescaleDB compression or retention job, has
    /// not succeeded for this long.
    pub job_stale_after_hours: i64,
    /// Distinct signal names kept in all; a message with a new name past it is dead-lettered.
    pub max_signals: usize,
    /// Distinct signal names one vehicle may send; past it, dead-lettered.
    pub max_signals_per_vehicle: usize,
    /// Pause between windows of a layout migration's move, so it never crowds out ingest.
    pub relayout_pause_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            chunk_days: 90,
            dtc_chunk_days: 90,
            retention_days: 1095,
            dtc_retention_days: 1095,
            dead_letter_retention_days: 365,
            compress_after_days: 7,
            ahead_days: 14,
            maintenance_interval_secs: 3600,
            job_stale_after_hours: 48,
            max_signals: 20_000,
            max_signals_per_vehicle: 1_000,
            relayout_pause_ms: 50,
        }
    }
}

/// `url` takes libpq's URL parameters for TLS (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`);
/// without `sslmode`, loopback hosts are plain and others `prefer` (see `store::connect`).
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: String,
    /// Connections for the API and background work; each ingest writer has its own on top.
    pub max_connections: u32,
    /// The password, from a file (it then goes into `url`, which is never printed whole).
    pub password_file: Option<PathBuf>,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `mqtt://` or `tcp://` plain; `mqtts://` or `ssl://` TLS (port 8883 by default).
    pub url: String,
    /// Stable across restarts: the broker keeps the persistent session under this id.
    pub client_id: String,
    /// Shared-subscription group; instances in one group split the stream. Empty: no sharing.
    pub share_group: String,
    /// How long the broker keeps the session (and queues for it) while the service is away.
    pub session_expiry_secs: u32,
    /// Unacknowledged messages the broker may have in flight to us: the back-pressure bound.
    pub receive_maximum: u16,
    /// Generous because a broker that overshoots the receive maximum (Mosquitto 2.0.11) queues
    /// its PINGRESP behind the backlog we are deliberately not reading yet.
    pub keep_alive_secs: u64,
    /// Largest packet the broker may send us. Must exceed the broker's own limit on what it
    /// accepts (Mosquitto's `max_packet_size`): a publish it takes but cannot forward to us is
    /// dropped without a trace. Larger payloads than `ingest.max_payload_bytes` still arrive
    /// and are dead-lettered.
    pub max_packet_bytes: u32,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// CA bundle trusted for the broker's certificate, besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (mutual TLS): the service's identity at the broker.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// HTTPS when `tls_cert_file` and `tls_key_file` are set, plain HTTP otherwise.
    pub addr: SocketAddr,
    /// Certificate chain and key (PEM) for HTTPS on `addr`; read again when they change.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// A plain HTTP listener beside the HTTPS one, for a TLS-terminating proxy in front.
    pub plain_addr: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMethod {
    /// Binary COPY into a staging table, then one INSERT .. ON CONFLICT DO NOTHING.
    Copy,
    /// INSERT .. SELECT FROM UNNEST(arrays) ON CONFLICT DO NOTHING.
    Unnest,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub enabled: bool,
    pub batch_max_messages: usize,
    pub batch_max_values: usize,
    pub batch_max_delay_ms: u64,
    pub max_payload_bytes: usize,
    pub max_batch_samples: usize,
    pub max_age_days: i64,
    pub max_future_hours: i64,
    /// Payload bytes held unacknowledged at most (received, parsed, waiting for their batch
    /// to commit): with `mqtt.receive_maximum`, the bound on ingest's memory. A message larger
    /// than this is still taken, alone.
    pub max_inflight_bytes: usize,
    pub write_method: WriteMethod,
    /// Batch transactions in flight at once, each on its own connection; acks still go out
    /// in arrival order, each after its batch commits.
    pub writers: usize,
    /// How often the daily rollup deltas are folded into `signal_daily` where the service
    /// maintains it (0: never on this instance; another instance or a batch job does it). A fold
    /// upserts each (vehicle, signal, day) touched since the last one, so longer intervals
    /// cost the database less with large fleets; day buckets lag by about this much.
    pub rollup_interval_ms: u64,
}

/// Online risk scoring (see `src/model/worker.rs`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Run the scoring worker on this instance.
    pub enabled: bool,
    /// The artifact to score with; a new file renamed over it is picked up without restart.
    pub artifact: std::path::PathBuf,
    /// A vehicle is scored once no new data has marked it for this long...
    pub debounce_ms: u64,
    /// ...or once it has waited this long since it first became dirty (busy vehicles).
    pub max_delay_ms: u64,
    /// How long a worker holds a claimed mark before another worker may take it.
    pub lease_secs: u64,
    pub poll_ms: u64,
    /// Vehicles scored per round trip.
    pub batch: i64,
    /// How often vehicles with stale scores (or scores of another model) are marked.
    pub sweep_interval_secs: u64,
    pub stale_after_hours: u64,
    /// How often the artifact file is checked for a new version.
    pub reload_check_ms: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            enabled: true,
            artifact: "models/current.json".into(),
            debounce_ms: 5_000,
            max_delay_ms: 60_000,
            lease_secs: 120,
            poll_ms: 1_000,
            batch: 100,
            sweep_interval_secs: 3_600,
            stale_after_hours: 24,
            reload_check_ms: 5_000,
        }
    }
}

/// Risk thresholds of one component: an offer is due when any horizon's probability
/// reaches its threshold (absent: that horizon never triggers).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub p7: Option<f64>,
    pub p30: Option<f64>,
    pub p90: Option<f64>,
}

/// The offer policy (`[offers]`). Thresholds per component are file-only:
/// `[offers.thresholds.brakes] p30 = 0.4`; `default` applies to components not listed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OffersConfig {
    /// Run the offer worker on this instance (several may; they do not double offers).
    pub enabled: bool,
    pub interval_ms: u64,
    pub thresholds: std::collections::BTreeMap<String, Thresholds>,
    /// No new offer for a vehicle and component this long after the owner declined one.
    pub cooldown_days: f64,
    /// An unanswered offer expires after this.
    pub ttl_days: f64,
    /// Windows per offer (3 to 5).
    pub windows: usize,
    /// How far ahead windows are sought, at most; sooner when failure is likely sooner.
    pub search_days: i64,
    /// ... but never less than this, so an urgent offer still has windows.
    pub min_search_days: i64,
    /// Nearby workshops asked when the home workshop has too few windows.
    pub nearby_workshops: i64,
    /// Used when a vehicle's profile names no home workshop; empty: such vehicles get none.
    pub default_workshop: String,
    /// Reminders, whichever comes first: time, distance or risk rise since the last notice.
    pub reminder_after_hours: f64,
    pub reminder_km: f64,
    pub reminder_risk_rise: f64,
    /// A reminder is hard (urgent) when p7 reaches this or failure is this close.
    pub hard_p7: f64,
    pub hard_urgency_days: f64,
    /// Alarm for a vehicle with a profile that has sent nothing for this long.
    pub silent_after_hours: f64,
    /// Risk rows considered per worker pass.
    pub batch: i64,
    /// Jobs one car needs whose latest sensible dates lie within this many days of each
    /// other become one visit (one offer with several jobs); 0: one offer per job.
    pub bundle_within_days: f64,
}

impl Default for OffersConfig {
    fn default() -> Self {
        let mut thresholds = std::collections::BTreeMap::new();
        thresholds.insert(
            "default".to_owned(),
            Thresholds {
                p7: Some(0.35),
                p30: Some(0.5),
                p90: Some(0.75),
            },
        );
        OffersConfig {
            enabled: true,
            interval_ms: 5000,
            thresholds,
            cooldown_days: 14.0,
            ttl_days: 14.0,
            windows: 4,
            search_days: 21,
            min_search_days: 3,
            nearby_workshops: 2,
            default_workshop: String::new(),
            reminder_after_hours: 72.0,
            reminder_km: 300.0,
            reminder_risk_rise: 0.15,
            hard_p7: 0.6,
            hard_urgency_days: 7.0,
            silent_after_hours: 48.0,
            batch: 200,
            bundle_within_days: 7.0,
        }
    }
}

/// Notifications (`[notify]`): the outbox dispatcher.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Run the dispatcher on this instance (several may share the outbox).
    pub enabled: bool,
    /// Where webhooks go: `https://`, or `http://` to a loopback address (any host with
    /// `webhook_allow_http`); empty: webhook events wait in the outbox.
    pub webhook_url: String,
    /// HMAC-SHA256 key for the `Aftercare-Signature` header.
    pub webhook_secret: Secret,
    pub webhook_secret_file: Option<PathBuf>,
    /// CA bundle trusted for the receiver's certificate, besides the system's roots.
    pub webhook_ca_file: Option<PathBuf>,
    /// Allow `http://` webhooks to hosts other than loopback (signed, but readable on the way).
    pub webhook_allow_http: bool,
    pub webhook_timeout_ms: u64,
    /// Publish vehicle events to `v1/vehicles/{vin}/offers` (QoS 1).
    pub mqtt: bool,
    pub interval_ms: u64,
    /// Retry backoff: base doubled per attempt, capped.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub batch: i64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            enabled: true,
            webhook_url: String::new(),
            webhook_secret: Secret::default(),
            webhook_secret_file: None,
            webhook_ca_file: None,
            webhook_allow_http: false,
            webhook_timeout_ms: 10_000,
            mqtt: true,
            interval_ms: 1000,
            retry_base_ms: 1000,
            retry_max_ms: 3_600_000,
            batch: 50,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing` filter directives, e.g. `info,aftercare=debug`; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "postgres://postgres@127.0.0.1:5432/aftercare".into(),
            max_connections: 8,
            password_file: None,
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "local".into());
        MqttConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: format!("aftercare-{host}"),
            share_group: "aftercare".into(),
            session_expiry_secs: 7 * 24 * 3600,
            receive_maximum: 8192,
            keep_alive_secs: 120,
            // Above the broker's max_packet_size (deploy/mosquitto.conf, 16 MiB) by room for
            // the topic and properties of the forwarded publish.
            max_packet_bytes: 16 * 1024 * 1024 + 64 * 1024,
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert_file: None,
            tls_key_file: None,
            plain_addr: None,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            enabled: true,
            batch_max_messages: 2048,
            batch_max_values: 50_000,
            batch_max_delay_ms: 50,
            max_payload_bytes: 1024 * 1024,
            max_batch_samples: 1000,
            max_age_days: 3 * 365,
            max_future_hours: 24,
            max_inflight_bytes: 64 * 1024 * 1024,
            write_method: WriteMethod::Copy,
            writers: 3,
            rollup_interval_ms: 10_000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            // sqlx logs server notices ("already exists, skipping") at info.
            filter: "info,sqlx=warn".into(),
        }
    }
}

// By hand: the URLs may hold a password.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &redact_url(&self.url))
            .field("client_id", &self.client_id)
            .field("share_group", &self.share_group)
            .field("session_expiry_secs", &self.session_expiry_secs)
            .field("receive_maximum", &self.receive_maximum)
            .field("keep_alive_secs", &self.keep_alive_secs)
            .field("max_packet_bytes", &self.max_packet_bytes)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

const SECTIONS: [&str; 11] = [
    "database", "mqtt", "http", "ingest", "log", "model", "offers", "notify", "storage", "traccar",
    "feeds",
];

impl Config {
    /// Loads defaults, then `file` (or `AFTERCARE_CONFIG`) if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env_file = std::env::var("AFTERCARE_CONFIG").ok();
        let file = file.map(Path::to_path_buf).or(env_file.map(Into::into));
        let mut table = match &file {
            Some(path) => {
                let display = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: display.clone(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|source| ConfigError::Toml {
                    path: display,
                    source,
                })?
            }
            None => toml::Table::new(),
        };
        overlay_env(&mut table, std::env::vars())?;
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        config.read_secret_files()?;
        config.validate()?;
        Ok(config)
    }

    /// Each `…_file` secret replaces its value setting; giving both is an error.
    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        fn both(value: &str, file: &str) -> ConfigError {
            ConfigError::Invalid(format!("set {value} or {file}, not both"))
        }
        if let Some(path) = &self.mqtt.password_file {
            if self.mqtt.password.is_some() {
                return Err(both("mqtt.password", "mqtt.password_file"));
            }
            self.mqtt.password = Some(crate::secret::read_file("mqtt.password_file", path)?);
        }
        if let Some(path) = &self.notify.webhook_secret_file {
            if !self.notify.webhook_secret.is_empty() {
                return Err(both("notify.webhook_secret", "notify.webhook_secret_file"));
            }
            self.notify.webhook_secret =
                crate::secret::read_file("notify.webhook_secret_file", path)?;
        }
        if let Some(path) = &self.database.password_file {
            let password = crate::secret::read_file("database.password_file", path)?;
            let mut url = url::Url::parse(&self.database.url)
                .map_err(|e| ConfigError::Invalid(format!("database.url is not a URL ({e})")))?;
            if url.password().is_some() {
                return Err(both("a password in database.url", "database.password_file"));
            }
            url.set_password(Some(password.expose())).map_err(|()| {
                ConfigError::Invalid(
                    "database.password_file needs a database.url with a host".into(),
                )
            })?;
            self.database.url = url.into();
        }
        Ok(())
    }

    /// The effective configuration as TOML, every secret and URL password redacted.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database.url = redact_url(&shown.database.url);
        shown.mqtt.url = redact_url(&shown.mqtt.url);
        shown.notify.webhook_url = redact_url(&shown.notify.webhook_url);
        toml::to_string(&shown)
            .unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let i = &self.ingest;
        if i.batch_max_messages == 0 || i.batch_max_values == 0 {
            return Err(ConfigError::Invalid(
                "ingest batch limits must be positive".into(),
            ));
        }
        let t = &self.traccar.topic;
        if crate::feeds::topic_matches(t, "v1/vehicles/x/telemetry")
            || crate::feeds::topic_matches(t, "v1/vehicles/x/dtc")
            || t.starts_with('$')
        {
            return Err(ConfigError::Invalid(format!(
                "traccar.topic {t:?} overlaps the contract's v1/vehicles topics or is a \
                 $-topic; give Traccar a topic of its own"
            )));
        }
        if !(1..=16).contains(&i.writers) {
            return Err(ConfigError::Invalid(
                "ingest.writers must be between 1 and 16".into(),
            ));
        }
        if self.mqtt.receive_maximum == 0 {
            return Err(ConfigError::Invalid(
                "mqtt.receive_maximum must be positive".into(),
            ));
        }
        let o = &self.offers;
        if !(3..=5).contains(&o.windows) {
            return Err(ConfigError::Invalid("offers.windows must be 3 to 5".into()));
        }
        for (name, t) in &o.thresholds {
            if name != "default" && name.parse::<crate::component::Component>().is_err() {
                return Err(ConfigError::Invalid(format!(
                    "offers.thresholds.{name}: not a component"
                )));
            }
            if [t.p7, t.p30, t.p90]
                .iter()
                .flatten()
                .any(|p| !(0.0..=1.0).contains(p))
            {
                return Err(ConfigError::Invalid(format!(
                    "offers.thresholds.{name}: probabilities are 0 to 1"
                )));
            }
        }
        if o.cooldown_days < 0.0
            || o.ttl_days <= 0.0
            || o.search_days < 1
            || o.min_search_days < 1
            || !(0.0..=365.0).contains(&o.bundle_within_days)
        {
            return Err(ConfigError::Invalid(
                "offers: cooldown_days >= 0, ttl_days > 0, search_days and min_search_days >= 1, \
                 bundle_within_days 0 to 365"
                    .into(),
            ));
        }
        self.validate_tls()?;
        if !self.notify.webhook_url.is_empty() && self.notify.webhook_secret.is_empty() {
            return Err(ConfigError::Invalid(
                "notify.webhook_secret is required with a webhook_url".into(),
            ));
        }
        if self.mqtt.client_id.is_empty() {
            return Err(ConfigError::Invalid(
                "mqtt.client_id must not be empty".into(),
            ));
        }
        if self.model.batch < 1 || self.model.lease_secs == 0 {
            return Err(ConfigError::Invalid(
                "model.batch and model.lease_secs must be positive".into(),
            ));
        }
        let st = &self.storage;
        if !(1..=366).contains(&st.chunk_days) || !(1..=366).contains(&st.dtc_chunk_days) {
            return Err(ConfigError::Invalid(
                "storage.chunk_days and storage.dtc_chunk_days must be 1 to 366".into(),
            ));
        }
        if st.retention_days < 1
            || st.dtc_retention_days < 1
            || st.dead_letter_retention_days < 1
            || st.compress_after_days < 1
            || st.ahead_days < 2
            || st.max_signals == 0
            || st.max_signals_per_vehicle == 0
        {
            return Err(ConfigError::Invalid(
                "storage: retention and compression days >= 1, ahead_days >= 2, signal bounds > 0"
                    .into(),
            ));
        }
        if i64::from(st.ahead_days) * 24 <= self.ingest.max_future_hours {
            return Err(ConfigError::Invalid(format!(
                "storage.ahead_days ({}) must reach past ingest.max_future_hours ({})",
                st.ahead_days, self.ingest.max_future_hours
            )));
        }
        if self.ingest.max_inflight_bytes < 1024 * 1024 {
            return Err(ConfigError::Invalid(
                "ingest.max_inflight_bytes must be at least 1 MiB".into(),
            ));
        }
        if self.mqtt.share_group.contains(['/', '+', '#']) {
            return Err(ConfigError::Invalid(
                "mqtt.share_group must not contain '/', '+' or '#'".into(),
            ));
        }
        Ok(())
    }

    /// Settings of the TLS links that can be checked without reading files or connecting.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let n = &self.notify;
        if !n.webhook_url.is_empty() {
            let url = url::Url::parse(&n.webhook_url).map_err(|e| {
                ConfigError::Invalid(format!("notify.webhook_url is not a URL ({e})"))
            })?;
            match url.scheme() {
                "https" => {}
                "http" if n.webhook_allow_http || is_loopback(&url) => {}
                "http" => {
                    return invalid(format!(
                        "notify.webhook_url {}: http:// only to a loopback address; use https:// \
                         (or set notify.webhook_allow_http)",
                        redact_url(&n.webhook_url)
                    ))
                }
                other => return invalid(format!("notify.webhook_url: {other}:// is not http(s)")),
            }
        } else if n.webhook_ca_file.is_some() {
            return invalid("notify.webhook_ca_file is set but notify.webhook_url is not".into());
        }
        let h = &self.http;
        if h.tls_cert_file.is_some() != h.tls_key_file.is_some() {
            return invalid(
                "http.tls_cert_file and http.tls_key_file must be given together".into(),
            );
        }
        if let Some(plain) = h.plain_addr {
            if h.tls_cert_file.is_none() {
                return invalid(
                    "http.plain_addr is the plain listener beside HTTPS: set http.tls_cert_file \
                     and http.tls_key_file (without them http.addr is plain already)"
                        .into(),
                );
            }
            if plain == h.addr && plain.port() != 0 {
                return invalid("http.plain_addr must differ from http.addr".into());
            }
        }
        let m = &self.mqtt;
        let scheme = self
            .mqtt
            .url
            .split_once("://")
            .map(|(s, _)| s)
            .unwrap_or("");
        match scheme {
            "mqtts" | "ssl" => {}
            "mqtt" | "tcp" => {
                if m.ca_file.is_some() || m.cert_file.is_some() || m.key_file.is_some() {
                    return invalid(format!(
                        "mqtt.ca_file, cert_file and key_file need a TLS url (mqtts://), \
                         not {}",
                        redact_url(&m.url)
                    ));
                }
            }
            _ => {
                return invalid(format!(
                    "mqtt.url {}: the scheme must be mqtt://, tcp://, mqtts:// or ssl://",
                    redact_url(&m.url)
                ))
            }
        }
        if m.cert_file.is_some() != m.key_file.is_some() {
            return invalid("mqtt.cert_file and mqtt.key_file must be given together".into());
        }
        if m.password.is_some() && m.username.is_none() {
            return invalid("mqtt.password needs mqtt.username".into());
        }
        // database.url's own grammar is checked where it is used (`store::pool`).
        Ok(())
    }

    pub fn batch_max_delay(&self) -> Duration {
        Duration::from_millis(self.ingest.batch_max_delay_ms)
    }

    pub fn limits(&self) -> crate::wire::Limits {
        crate::wire::Limits {
            max_payload_bytes: self.ingest.max_payload_bytes,
            max_batch_samples: self.ingest.max_batch_samples,
            max_age: chrono::Duration::days(self.ingest.max_age_days),
            max_future: chrono::Duration::hours(self.ingest.max_future_hours),
            retention: chrono::Duration::days(i64::from(self.storage.retention_days)),
            dtc_retention: chrono::Duration::days(i64::from(self.storage.dtc_retention_days)),
        }
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Settings whose environment value is always taken as a string (a password of digits is not
/// a number).
fn string_only(key: &str) -> bool {
    key.ends_with("password") || key.ends_with("secret") || key == "username"
}

/// Applies `AFTERCARE_<SECTION>_<KEY>=value`; values are read as TOML scalars when they parse
/// as one (numbers, booleans), as strings otherwise.
fn overlay_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, raw) in vars {
        let Some(rest) = var.strip_prefix("AFTERCARE_") else {
            continue;
        };
        if rest == "CONFIG" {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        let Some((section, key)) = SECTIONS.iter().find_map(|s| {
            lower
                .strip_prefix(s)
                .and_then(|k| k.strip_prefix('_'))
                .map(|k| (*s, k))
        }) else {
            return Err(ConfigError::UnknownEnv { var });
        };
        let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
            Ok(_) if string_only(key) => toml::Value::String(raw.clone()),
            Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.clone())),
            Err(_) => toml::Value::String(raw.clone()),
        };
        let entry = table
            .entry(section.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key.to_owned(), value);
            }
            _ => return Err(ConfigError::Invalid(format!("[{section}] must be a table"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_defaults() {
        let mut table: toml::Table =
            toml::from_str("[mqtt]\nurl = \"mqtt://file:1883\"\nshare_group = \"g\"\n").unwrap();
        let vars = [
            ("AFTERCARE_MQTT_URL", "mqtt://env:1884"),
            ("AFTERCARE_INGEST_BATCH_MAX_MESSAGES", "17"),
            ("AFTERCARE_HTTP_ADDR", "0.0.0.0:9000"),
            ("AFTERCARE_MODEL_ARTIFACT", "/srv/models/current.json"),
            ("AFTERCARE_MODEL_DEBOUNCE_MS", "250"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        overlay_env(&mut table, vars.into_iter()).unwrap();
        let c: Config = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(c.mqtt.url, "mqtt://env:1884");
        assert_eq!(c.mqtt.share_group, "g");
        assert_eq!(c.ingest.batch_max_messages, 17);
        assert_eq!(c.http.addr.port(), 9000);
        assert_eq!(c.model.artifact.to_str(), Some("/srv/models/current.json"));
        assert_eq!(c.model.debounce_ms, 250);
        assert!(c.model.enabled);
        assert_eq!(
            c.database.url,
            "postgres://postgres@127.0.0.1:5432/aftercare"
        );
    }

    /// Whatever the shipped broker configuration accepts, the service receives (issue 14: a
    /// 17 MiB publish was acknowledged by the broker and dropped on its way to the service).
    #[test]
    fn the_shipped_broker_accepts_no_packet_the_service_would_not_take() {
        let conf = include_str!("../deploy/mosquitto.conf");
        let broker_max: u32 = conf
            .lines()
            .find_map(|l| l.trim().strip_prefix("max_packet_size "))
            .and_then(|v| v.trim().parse().ok())
            .expect("max_packet_size in deploy/mosquitto.conf");
        let c = Config::default();
        assert!(broker_max > 0, "0 would mean no limit");
        assert!(
            broker_max + 32 * 1024 <= c.mqtt.max_packet_bytes,
            "room for the topic and properties a forwarded publish carries"
        );
        assert!(broker_max as usize > c.ingest.max_payload_bytes);
    }

    #[test]
    fn secrets_come_from_files_and_stay_strings() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("db");
        std::fs::write(&pw, "p@ss word\n").unwrap();
        let mut table = toml::Table::new();
        let vars = [
            (
                "AFTERCARE_DATABASE_URL",
                "postgres://app@db.example/x?sslmode=verify-full",
            ),
            ("AFTERCARE_DATABASE_PASSWORD_FILE", pw.to_str().unwrap()),
            ("AFTERCARE_MQTT_USERNAME", "1234"),
            ("AFTERCARE_MQTT_PASSWORD", "0012"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        overlay_env(&mut table, vars.into_iter()).unwrap();
        let mut c: Config = toml::Value::Table(table).try_into().unwrap();
        c.read_secret_files().unwrap();
        let url = url::Url::parse(&c.database.url).unwrap();
        assert_eq!(url.username(), "app");
        assert!(
            url.password().is_some(),
            "the file's password is in the URL"
        );
        assert_eq!(c.mqtt.username.as_deref(), Some("1234"));
        assert_eq!(c.mqtt.password.as_ref().map(Secret::expose), Some("0012"));
        let shown = format!("{c:?}\n{}", c.redacted_toml());
        assert!(
            !shown.contains("p@ss") && !shown.contains("0012"),
            "{shown}"
        );
        // A value and its file both: refused.
        c.database.password_file = Some(pw);
        assert!(
            matches!(c.read_secret_files(), Err(ConfigError::Invalid(m)) if m.contains("not both"))
        );
    }

    #[test]
    fn unknown_settings_are_refused() {
        let mut table = toml::Table::new();
        let err = overlay_env(
            &mut table,
            [("AFTERCARE_NOPE_X".to_owned(), "1".to_owned())].into_iter(),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::UnknownEnv { .. }));
        let bad: Result<Config, _> = toml::from_str("[mqtt]\nurll = \"x\"\n");
        assert!(bad.is_err());
    }
}
