//! Storage: the PostgreSQL/TimescaleDB schema and every query against it. Ingest hands it
//! parsed batches; the API reads through it. Nothing above this module writes SQL.

mod admit;
mod batch;
pub mod booking;
pub mod capacity;
mod connect;
pub mod copy;
pub mod devices;
mod diagnostics;
pub mod fast_load;
pub mod history;
pub mod keys;
pub mod kpis;
mod migrate;
pub mod offers;
pub mod outbox;
pub mod preview;
pub mod profiles;
pub mod read;
pub mod relayout;
pub mod retention;
pub mod risk;
mod rollup;
mod samples;
pub mod service_records;
pub mod stats;
mod writer;

pub use admit::{Admission, SignalLimits};
pub use batch::{signal_names, BatchItem, BatchResult, DeadLetter, Outcome};
pub use connect::check_url;
pub use migrate::{migrate_schema_until, Applies, Flavor, ServerCapabilities, MIGRATIONS};
pub use rollup::fold_committed;
pub use writer::DEAD_LETTER_MAX_BYTES;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Applies pending schema migrations, finishes a layout migration that has nothing left to
/// move, and makes sure time partitions exist for now (plain PostgreSQL). Returns the
/// database's flavour. Every command that opens the database runs this first.
pub async fn migrate(pool: &PgPool) -> Result<Flavor, StoreError> {
    let flavor = migrate::migrate_schema(pool).await?;
    relayout::finish_if_empty(pool).await?;
    retention::ensure_partitions(pool, flavor, chrono::Utc::now()).await?;
    Ok(flavor)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {}", connect::describe(.0))]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(String),
    /// Stored data this build cannot read (a bug or tampering, not bad input).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A fresh bulk load was handed data it cannot place (a bug in the caller).
    #[error("bulk load: {0}")]
    BulkLoad(String),
}

impl StoreError {
    /// A key that is already taken (the fast write path's signal to write carefully).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Db(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505"))
    }

    /// A row for a time range no partition covers (plain PostgreSQL).
    pub fn is_missing_partition(&self) -> bool {
        matches!(self, StoreError::Db(sqlx::Error::Database(db))
            if db.code().as_deref() == Some("23514") && db.message().contains("no partition"))
    }

    /// Errors worth retrying unchanged: the connection, the server going away, lock conflicts.
    /// Anything else (data the database refuses) would fail again.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(db)) => {
                let code = db.code().unwrap_or_default();
                code.starts_with("08") // connection exception
                    || code.starts_with("53") // insufficient resources
                    || code.starts_with("57") // operator intervention (shutdown, cancel)
                    || code == "40001" // serialization failure
                    || code == "40P01" // deadlock
                    || code == "55P03" // lock not available
            }
            StoreError::Db(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Protocol(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            _ => false,
        }
    }
}

/// Name to id (VINs and signal paths), looked up for every value on the ingest path: foldhash,
/// seeded per process, rather than SipHash, which took a tenth of the service's ingest CPU.
pub type IdMap = std::collections::HashMap<String, i32, foldhash::fast::RandomState>;

/// Connection pool plus the dictionaries (VIN and signal name to id, which signals a vehicle
/// sends) that the hot path caches, each cache bounded.
pub struct Store {
    pool: PgPool,
    flavor: Flavor,
    limits: SignalLimits,
    /// The contract's limits (time window, retention) for what arrives other than over MQTT
    /// (HTTP feeds and imports), as the service is configured.
    wire_limits: crate::wire::Limits,
    vehicle_ids: admit::BoundedMap<String, i32>,
    signal_ids: admit::BoundedMap<String, i32>,
    vehicle_signals: admit::BoundedMap<(i32, i32), ()>,
    /// Whether old-layout tables may still exist, and when that was last checked.
    legacy: Mutex<(bool, Option<Instant>)>,
}

/// Entries the VIN cache holds before it starts afresh.
const VEHICLE_CACHE_ENTRIES: usize = 200_000;
/// Entries the (vehicle, signal) cache holds before it starts afresh.
const PAIR_CACHE_ENTRIES: usize = 500_000;
/// How often an instance looks again whether a layout migration has finished.
const LEGACY_RECHECK: Duration = Duration::from_secs(30);

/// Options for `url` (libpq's URL grammar, TLS parameters included; see `connect`).
pub fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    Ok(connect::options(url)?
        .application_name("aftercare")
        // JIT compiles a plan whose estimate passes `jit_above_cost`; the vehicle page's
        // per-signal LATERAL read is estimated far above its real cost and took 186 ms to
        // compile for 0.6 ms of work. Every query here is a short indexed one.
        .options([("jit", "off")])
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(5)))
}

/// A pool that fails fast when the server is away, so callers can back off and report it.
pub async fn pool(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(connect_options(url)?))
}

impl Store {
    /// Opens a store on an already-migrated database, with the default signal bounds.
    pub async fn open(pool: PgPool) -> Result<Store, StoreError> {
        Self::open_with(pool, SignalLimits::default()).await
    }

    pub async fn open_with(pool: PgPool, limits: SignalLimits) -> Result<Store, StoreError> {
        let flavor = Flavor::detect(&pool).await?;
        Ok(Store {
            pool,
            flavor,
            limits,
            wire_limits: crate::wire::Limits::default(),
            vehicle_ids: admit::BoundedMap::new(VEHICLE_CACHE_ENTRIES),
            // Only names in the table are cached, and the table holds at most this many.
            signal_ids: admit::BoundedMap::new(limits.max_signals.saturating_add(1)),
            vehicle_signals: admit::BoundedMap::new(PAIR_CACHE_ENTRIES),
            legacy: Mutex::new((true, None)),
        })
    }

    /// Whether the old-layout sample tables may still hold rows (a layout migration under
    /// way). Looked up at most every `LEGACY_RECHECK`; once gone they never come back.
    pub(crate) async fn legacy_layout(&self) -> Result<bool, StoreError> {
        {
            let state = self.legacy.lock().unwrap_or_else(|p| p.into_inner());
            match *state {
                (false, _) => return Ok(false),
                (true, Some(at)) if at.elapsed() < LEGACY_RECHECK => return Ok(true),
                _ => {}
            }
        }
        let present = relayout::legacy_present(&self.pool).await?;
        *self.legacy.lock().unwrap_or_else(|p| p.into_inner()) = (present, Some(Instant::now()));
        Ok(present)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The stored signal of that name, from the name cache or the table; never creates one.
    pub async fn signal_ref<'a>(
        &self,
        name: &'a str,
    ) -> Result<Option<read::SignalRef<'a>>, StoreError> {
        if let Some(id) = self.signal_ids.get(name) {
            return Ok(Some(read::SignalRef { id, name }));
        }
        let found = read::signal_ref(&self.pool, name).await?;
        if let Some(signal) = found {
            self.signal_ids.insert_all([(name.to_owned(), signal.id)]);
        }
        Ok(found)
    }

    /// The store with the contract's limits the service runs with (default: `Limits`'s).
    pub fn with_wire_limits(mut self, limits: crate::wire::Limits) -> Store {
        self.wire_limits = limits;
        self
    }

    pub fn wire_limits(&self) -> &crate::wire::Limits {
        &self.wire_limits
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
