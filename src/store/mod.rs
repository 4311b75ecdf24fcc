//! Storage: the PostgreSQL/TimescaleDB schema and every query against it. Ingest hands it
//! parsed batches; the API reads through it. Nothing above this module writes SQL.

pub mod booking;
pub mod capacity;
pub mod copy;
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
pub mod risk;
mod rollup;
pub mod service_records;
mod telemetry;
mod writer;

pub use migrate::{migrate, Flavor, MIGRATIONS};
pub use rollup::fold_committed;
pub use writer::{signal_names, BatchItem, BatchResult, DeadLetter, Outcome};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
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

/// Connection pool plus the dictionaries (VIN and signal name to id) that the hot path caches.
pub struct Store {
    pool: PgPool,
    flavor: Flavor,
    vehicle_ids: Mutex<IdMap>,
    signal_ids: Mutex<IdMap>,
}

pub fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    Ok(PgConnectOptions::from_str(url)?
        .application_name("aftercare")
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
    /// Opens a store on an already-migrated database.
    pub async fn open(pool: PgPool) -> Result<Store, StoreError> {
        let flavor = Flavor::detect(&pool).await?;
        Ok(Store {
            pool,
            flavor,
            vehicle_ids: Mutex::new(IdMap::default()),
            signal_ids: Mutex::new(IdMap::default()),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
