//! Schema migrations, chosen by what the server offers: TimescaleDB hypertables when the
//! extension is available, the continuous aggregate and policies when its Timescale-licensed
//! build is loaded, and the plain-PostgreSQL rollup table otherwise.

use super::StoreError;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgPool};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Plain,
    /// Hypertables; `tsl` when compression, policies and continuous aggregates are available.
    Timescale {
        tsl: bool,
    },
}

impl Flavor {
    /// Reads the flavor off a migrated database (what was actually applied, not what the
    /// server could do now).
    pub async fn detect(pool: &PgPool) -> Result<Flavor, StoreError> {
        let (timescale, rollup_is_view): (bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),
                    COALESCE((SELECT relkind = 'v' FROM pg_class
                              WHERE oid = to_regclass('signal_daily')), false)",
        )
        .fetch_one(pool)
        .await?;
        Ok(match (timescale, rollup_is_view) {
            (false, _) => Flavor::Plain,
            (true, tsl) => Flavor::Timescale { tsl },
        })
    }

    /// Whether the ingest writer maintains `signal_daily` itself.
    pub fn writes_rollup(self) -> bool {
        !matches!(self, Flavor::Timescale { tsl: true })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    Always,
    Timescale,
    Tsl,
    NotTsl,
}

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub applies: Applies,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        applies: Applies::Always,
        sql: include_str!("../../migrations/0001_core.sql"),
    },
    Migration {
        version: 2,
        name: "hypertables",
        applies: Applies::Timescale,
        sql: include_str!("../../migrations/0002_hypertables.timescale.sql"),
    },
    Migration {
        version: 3,
        name: "rollup_continuous_aggregate",
        applies: Applies::Tsl,
        sql: include_str!("../../migrations/0003_rollup.tsl.sql"),
    },
    Migration {
        version: 3,
        name: "rollup_table",
        applies: Applies::NotTsl,
        sql: include_str!("../../migrations/0003_rollup.table.sql"),
    },
    Migration {
        version: 4,
        name: "service_and_risk",
        applies: Applies::Always,
        sql: include_str!("../../migrations/0004_service_and_risk.sql"),
    },
    Migration {
        version: 5,
        name: "rollup_deltas",
        applies: Applies::NotTsl,
        sql: include_str!("../../migrations/0005_rollup_deltas.table.sql"),
    },
    Migration {
        version: 15,
        name: "score_queue",
        applies: Applies::Always,
        sql: include_str!("../../migrations/0015_score_queue.sql"),
    },
    Migration {
        version: 16,
        name: "fleet_rank",
        applies: Applies::Always,
        sql: include_str!("../../migrations/0016_fleet_rank.sql"),
    },
    Migration {
        version: 20,
        name: "capacity",
        applies: Applies::Always,
        sql: include_str!("../../migrations/0020_capacity.sql"),
    },
    Migration {
        version: 21,
        name: "booking",
        applies: Applies::Always,
        sql: include_str!("../../migrations/0021_booking.sql"),
    },
    Migration {
        version: 40,
        name: "score_marks_released",
        applies: Applies::Always,
        sql: include_str!("../../migrations/0040_score_marks_released.sql"),
    },
    Migration {
        version: 41,
        name: "visits",
        applies: Applies::Always,
        sql: include_str!("../../migrations/0041_visits.sql"),
    },
];

fn checksum(sql: &str) -> Vec<u8> {
    Sha256::digest(sql.as_bytes()).to_vec()
}

/// Applies pending migrations under an advisory lock, so instances starting together do not
/// race. Returns the flavor of the migrated database.
pub async fn migrate(pool: &PgPool) -> Result<Flavor, StoreError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock(hashtext('aftercare.migrate'))")
        .execute(&mut *conn)
        .await?;
    let result = apply_pending(&mut conn).await;
    sqlx::query("SELECT pg_advisory_unlock(hashtext('aftercare.migrate'))")
        .execute(&mut *conn)
        .await?;
    result?;
    drop(conn);
    Flavor::detect(pool).await
}

async fn apply_pending(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS aftercare_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             checksum   bytea NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *conn)
    .await?;
    let applied: Vec<(i32, String, Vec<u8>)> =
        sqlx::query_as("SELECT version, name, checksum FROM aftercare_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    let timescale_available: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
    )
    .fetch_one(&mut *conn)
    .await?;
    // Decided once, by the first migration run: an existing plain database stays plain.
    let timescale = match applied.iter().find(|(v, ..)| *v == 1) {
        Some(_) => applied.iter().any(|(v, ..)| *v == 2),
        None => timescale_available,
    };
    for m in MIGRATIONS {
        let wanted = match m.applies {
            Applies::Always => true,
            Applies::Timescale => timescale,
            Applies::Tsl | Applies::NotTsl => {
                let tsl = timescale && tsl_loaded(conn).await?;
                (m.applies == Applies::Tsl) == tsl
            }
        };
        if !wanted {
            continue;
        }
        if let Some((_, name, sum)) = applied.iter().find(|(v, ..)| *v == m.version) {
            if name != m.name {
                return Err(StoreError::Migrate(format!(
                    "version {} was applied as {name:?}, this build would apply {:?}; \
                     the database's TimescaleDB flavor changed since it was created",
                    m.version, m.name
                )));
            }
            if *sum != checksum(m.sql) {
                return Err(StoreError::Migrate(format!(
                    "migration {} ({}) was changed after it was applied",
                    m.version, m.name
                )));
            }
            continue;
        }
        tracing::info!(version = m.version, name = m.name, "applying migration");
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(|e| {
            StoreError::Migrate(format!("migration {} ({}) failed: {e}", m.version, m.name))
        })?;
        sqlx::query(
            "INSERT INTO aftercare_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(checksum(m.sql))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

async fn tsl_loaded(conn: &mut sqlx::PgConnection) -> Result<bool, StoreError> {
    let license: Option<String> =
        sqlx::query_scalar("SELECT current_setting('timescaledb.license', true)")
            .fetch_one(&mut *conn)
            .await?;
    Ok(license.as_deref() == Some("timescale"))
}
