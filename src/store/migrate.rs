//! Schema migrations, for the flavour the database was created with: TimescaleDB hypertables
//! when the server has the extension loaded (preloaded), compression and its policies when
//! that build carries the Timescale licence, plain PostgreSQL with time partitions otherwise.
//! The flavour is decided once, when the database is first migrated, recorded, and never
//! switched under an existing database: a server that can no longer provide it is refused.

use super::StoreError;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgPool};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Plain,
    /// Hypertables; `tsl` when compression and background policies are available.
    Timescale {
        tsl: bool,
    },
}

impl Flavor {
    /// The flavour a migrated database was created with (recorded at its first migration;
    /// read off the applied migrations for databases migrated by builds before the record).
    pub async fn detect(pool: &PgPool) -> Result<Flavor, StoreError> {
        let mut conn = pool.acquire().await?;
        Self::detect_on(&mut conn).await
    }

    pub async fn detect_on(conn: &mut sqlx::PgConnection) -> Result<Flavor, StoreError> {
        Ok(recorded(conn).await?.unwrap_or(Flavor::Plain))
    }

    fn as_str(self) -> &'static str {
        match self {
            Flavor::Plain => "plain",
            Flavor::Timescale { tsl: false } => "timescale-apache",
            Flavor::Timescale { tsl: true } => "timescale-tsl",
        }
    }

    fn parse(s: &str) -> Option<Flavor> {
        Some(match s {
            "plain" => Flavor::Plain,
            "timescale-apache" => Flavor::Timescale { tsl: false },
            "timescale-tsl" => Flavor::Timescale { tsl: true },
            _ => return None,
        })
    }

    pub fn is_timescale(self) -> bool {
        matches!(self, Flavor::Timescale { .. })
    }
}

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the server offers now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCapabilities {
    /// `timescaledb` among the server's available extensions.
    pub timescale_available: bool,
    /// ... and in `shared_preload_libraries`, which it must be to load at all: without it
    /// `CREATE EXTENSION` ends the connection. Only superusers (and `pg_read_all_settings`)
    /// may read that setting: unknown to others, who then go by the next two.
    pub timescale_preloaded: bool,
    /// Installed in this database already (by whoever set the database up).
    pub timescale_installed: bool,
    /// `timescaledb.license` when the library is loaded (`apache` or `timescale`): the
    /// setting exists only then, so it also proves the library loads (some embedded builds
    /// load it without `shared_preload_libraries`).
    pub license: Option<String>,
}

impl ServerCapabilities {
    pub async fn read(conn: &mut sqlx::PgConnection) -> Result<ServerCapabilities, StoreError> {
        let (available, installed, preload, license): (bool, bool, Option<String>, Option<String>) =
            sqlx::query_as(
                "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
                        EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),
                        (SELECT setting FROM pg_settings
                         WHERE name = 'shared_preload_libraries'),
                        current_setting('timescaledb.license', true)",
            )
            .fetch_one(&mut *conn)
            .await?;
        Ok(ServerCapabilities {
            timescale_available: available,
            timescale_preloaded: preload.as_deref().is_some_and(preloads_timescale),
            timescale_installed: installed,
            license: license.filter(|l| !l.is_empty()),
        })
    }

    /// TimescaleDB can run here: available, and preloaded, seen loaded, or installed in this
    /// database already.
    pub fn timescale_loads(&self) -> bool {
        self.timescale_available
            && (self.timescale_preloaded || self.license.is_some() || self.timescale_installed)
    }

    /// The flavour a new database gets on this server, and why.
    pub fn choose(&self) -> (Flavor, String) {
        match (self.timescale_available, self.timescale_loads()) {
            (true, true) => {
                let tsl = self.license.as_deref() == Some("timescale");
                (
                    Flavor::Timescale { tsl },
                    format!(
                        "TimescaleDB is installed and loads, licence {}",
                        self.license
                            .as_deref()
                            .unwrap_or("unknown (taken as apache)")
                    ),
                )
            }
            (true, false) => (
                Flavor::Plain,
                "TimescaleDB is on the server but not in shared_preload_libraries (or that \
                 setting is not readable to this user), so it cannot load; using plain \
                 PostgreSQL (preload it, or install it in the database as a superuser, and \
                 create the database afresh to use TimescaleDB)"
                    .into(),
            ),
            (false, _) => (
                Flavor::Plain,
                "TimescaleDB is not installed on this server".into(),
            ),
        }
    }

    /// Refuses a server that cannot run a database of `flavor`.
    fn check(&self, flavor: Flavor) -> Result<(), StoreError> {
        match flavor {
            Flavor::Plain => Ok(()),
            Flavor::Timescale { tsl } => {
                if !self.timescale_loads() {
                    return Err(StoreError::Migrate(format!(
                        "this database was created for TimescaleDB ({flavor}), but the server \
                         does not have the extension loaded: add timescaledb to \
                         shared_preload_libraries and restart PostgreSQL"
                    )));
                }
                if tsl && self.license.as_deref() == Some("apache") {
                    return Err(StoreError::Migrate(format!(
                        "this database was created with TimescaleDB's Timescale-licensed build \
                         ({flavor}: compression and policies), but the server runs the \
                         apache-only build (timescaledb.license = apache)"
                    )));
                }
                Ok(())
            }
        }
    }
}

/// `shared_preload_libraries` names timescaledb (possibly with a path or among others).
fn preloads_timescale(setting: &str) -> bool {
    setting
        .split(',')
        .map(|l| l.trim().trim_matches('"'))
        .any(|l| l == "timescaledb" || l.ends_with("/timescaledb"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    Always,
    /// Plain PostgreSQL only.
    Plain,
    /// TimescaleDB, either licence.
    Timescale,
    /// TimescaleDB with the Timescale licence.
    Tsl,
    /// Plain PostgreSQL or apache-only TimescaleDB.
    NotTsl,
}

impl Applies {
    pub fn applies_to(self, flavor: Flavor) -> bool {
        match self {
            Applies::Always => true,
            Applies::Plain => flavor == Flavor::Plain,
            Applies::Timescale => flavor.is_timescale(),
            Applies::Tsl => flavor == Flavor::Timescale { tsl: true },
            Applies::NotTsl => flavor != Flavor::Timescale { tsl: true },
        }
    }
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
        version: 30,
        name: "sample_rows",
        applies: Applies::Always,
        sql: include_str!("../../migrations/0030_sample_rows.sql"),
    },
    Migration {
        version: 31,
        name: "samples_partitioned",
        applies: Applies::Plain,
        sql: include_str!("../../migrations/0031_samples.plain.sql"),
    },
    Migration {
        version: 31,
        name: "samples_hypertable",
        applies: Applies::Timescale,
        sql: include_str!("../../migrations/0031_samples.timescale.sql"),
    },
    Migration {
        version: 32,
        name: "compression_and_folded_rollup",
        applies: Applies::Tsl,
        sql: include_str!("../../migrations/0032_compression.tsl.sql"),
    },
    Migration {
        version: 33,
        name: "sample_reads",
        applies: Applies::Always,
        sql: include_str!("../../migrations/0033_sample_reads.sql"),
    },
    Migration {
        version: 34,
        name: "storage_policy",
        applies: Applies::Always,
        sql: include_str!("../../migrations/0034_storage_policy.sql"),
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
    Migration {
        version: 50,
        name: "list_indexes",
        applies: Applies::Always,
        sql: include_str!("../../migrations/0050_list_indexes.sql"),
    },
    Migration {
        version: 51,
        name: "partition_width",
        applies: Applies::Plain,
        sql: include_str!("../../migrations/0051_partition_width.plain.sql"),
    },
    Migration {
        version: 51,
        name: "partition_width",
        applies: Applies::Timescale,
        sql: include_str!("../../migrations/0051_partition_width.timescale.sql"),
    },
    Migration {
        version: 52,
        name: "wider_partitions",
        applies: Applies::Plain,
        sql: include_str!("../../migrations/0052_wider_partitions.plain.sql"),
    },
    Migration {
        version: 52,
        name: "wider_partitions",
        applies: Applies::Timescale,
        sql: include_str!("../../migrations/0052_wider_partitions.timescale.sql"),
    },
    Migration {
        version: 60,
        name: "device_register",
        applies: Applies::Always,
        sql: include_str!("../../migrations/0060_device_register.sql"),
    },
    Migration {
        version: 61,
        name: "signal_buckets",
        applies: Applies::Always,
        sql: include_str!("../../migrations/0061_signal_buckets.sql"),
    },
];

fn checksum(sql: &str) -> Vec<u8> {
    Sha256::digest(sql.as_bytes()).to_vec()
}

/// Applies pending migrations under an advisory lock, so instances starting together do not
/// race. Returns the flavour of the migrated database.
pub async fn migrate_schema(pool: &PgPool) -> Result<Flavor, StoreError> {
    migrate_schema_until(pool, i32::MAX).await
}

/// `migrate_schema` up to and including `last_version`: a database as an older build left it
/// (upgrade tests).
pub async fn migrate_schema_until(pool: &PgPool, last_version: i32) -> Result<Flavor, StoreError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock(hashtext('aftercare.migrate'))")
        .execute(&mut *conn)
        .await?;
    let result = apply_pending(&mut conn, last_version).await;
    sqlx::query("SELECT pg_advisory_unlock(hashtext('aftercare.migrate'))")
        .execute(&mut *conn)
        .await?;
    result
}

async fn apply_pending(
    conn: &mut sqlx::PgConnection,
    last_version: i32,
) -> Result<Flavor, StoreError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS aftercare_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             checksum   bytea NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE IF NOT EXISTS aftercare_flavor (
             id         boolean PRIMARY KEY DEFAULT true CHECK (id),
             flavor     text NOT NULL,
             reason     text NOT NULL,
             decided_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *conn)
    .await?;
    let applied: Vec<(i32, String, Vec<u8>)> =
        sqlx::query_as("SELECT version, name, checksum FROM aftercare_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    let server = ServerCapabilities::read(conn).await?;
    let flavor = match recorded(conn).await? {
        Some(flavor) => {
            server.check(flavor)?;
            flavor
        }
        None => {
            let server = if server.timescale_loads() {
                // The licence is known once the extension is loaded into this database.
                sqlx::query("CREATE EXTENSION IF NOT EXISTS timescaledb")
                    .execute(&mut *conn)
                    .await?;
                ServerCapabilities::read(conn).await?
            } else {
                server
            };
            let (flavor, reason) = server.choose();
            tracing::info!(%flavor, reason, "database flavour chosen");
            sqlx::query("INSERT INTO aftercare_flavor (flavor, reason) VALUES ($1, $2)")
                .bind(flavor.as_str())
                .bind(&reason)
                .execute(&mut *conn)
                .await?;
            flavor
        }
    };
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.applies.applies_to(flavor) && m.version <= last_version)
    {
        if let Some((_, name, sum)) = applied.iter().find(|(v, ..)| *v == m.version) {
            if name != m.name {
                return Err(StoreError::Migrate(format!(
                    "version {} was applied as {name:?}, this build would apply {:?} for a \
                     {flavor} database: the database is not of the flavour recorded for it",
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
    Ok(flavor)
}

/// The recorded flavour; for databases migrated before it was recorded, what their applied
/// migrations say (and it is recorded then). None for a database not migrated yet, or one
/// that has only the flavour-independent first migration (a run that failed right after it).
async fn recorded(conn: &mut sqlx::PgConnection) -> Result<Option<Flavor>, StoreError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('aftercare_flavor') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if exists {
        let row: Option<String> = sqlx::query_scalar("SELECT flavor FROM aftercare_flavor")
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(name) = row {
            return Flavor::parse(&name).map(Some).ok_or_else(|| {
                StoreError::Migrate(format!("unknown recorded database flavour {name:?}"))
            });
        }
    }
    let migrated: bool =
        sqlx::query_scalar("SELECT to_regclass('aftercare_migrations') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    if !migrated {
        return Ok(None);
    }
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM aftercare_migrations WHERE version IN (2, 3) ORDER BY version",
    )
    .fetch_all(&mut *conn)
    .await?;
    let inferred = match names.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => return Ok(None),
        ["hypertables", "rollup_continuous_aggregate"] => Flavor::Timescale { tsl: true },
        ["hypertables", ..] => Flavor::Timescale { tsl: false },
        _ => Flavor::Plain,
    };
    if exists {
        sqlx::query("INSERT INTO aftercare_flavor (flavor, reason) VALUES ($1, $2)")
            .bind(inferred.as_str())
            .bind("read off the migrations an earlier build applied")
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some(inferred))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_setting_is_read_as_a_list() {
        assert!(preloads_timescale("timescaledb"));
        assert!(preloads_timescale("pg_stat_statements, timescaledb"));
        assert!(preloads_timescale(
            "'$libdir/timescaledb'".trim_matches('\'')
        ));
        assert!(!preloads_timescale(""));
        assert!(!preloads_timescale("timescaledb_toolkit"));
    }

    fn server(available: bool, preloaded: bool, license: Option<&str>) -> ServerCapabilities {
        ServerCapabilities {
            timescale_available: available,
            timescale_preloaded: preloaded,
            timescale_installed: false,
            license: license.map(str::to_owned),
        }
    }

    #[test]
    fn a_new_database_takes_timescale_only_when_it_can_load() {
        assert_eq!(server(false, false, None).choose().0, Flavor::Plain);
        // Installed but not preloaded: CREATE EXTENSION would end the connection.
        assert_eq!(server(true, false, None).choose().0, Flavor::Plain);
        // Not preloaded, but seen loaded (its licence setting exists).
        assert_eq!(
            server(true, false, Some("timescale")).choose().0,
            Flavor::Timescale { tsl: true }
        );
        // The preload setting unreadable to this user, but installed in the database.
        let installed = ServerCapabilities {
            timescale_installed: true,
            ..server(true, false, None)
        };
        assert!(installed.timescale_loads());
        assert_eq!(
            server(true, true, Some("apache")).choose().0,
            Flavor::Timescale { tsl: false }
        );
        assert_eq!(
            server(true, true, Some("timescale")).choose().0,
            Flavor::Timescale { tsl: true }
        );
    }

    #[test]
    fn a_recorded_flavour_is_never_switched() {
        let tsl = Flavor::Timescale { tsl: true };
        assert!(server(true, true, Some("timescale")).check(tsl).is_ok());
        assert!(server(true, false, None).check(tsl).is_err());
        assert!(server(false, false, None).check(tsl).is_err());
        assert!(server(true, true, Some("apache")).check(tsl).is_err());
        assert!(server(true, true, Some("timescale"))
            .check(Flavor::Timescale { tsl: false })
            .is_ok());
        assert!(server(true, true, Some("timescale"))
            .check(Flavor::Plain)
            .is_ok());
    }

    #[test]
    fn alternatives_of_one_version_apply_to_disjoint_flavours() {
        for flavor in [
            Flavor::Plain,
            Flavor::Timescale { tsl: false },
            Flavor::Timescale { tsl: true },
        ] {
            let mut versions: Vec<i32> = MIGRATIONS
                .iter()
                .filter(|m| m.applies.applies_to(flavor))
                .map(|m| m.version)
                .collect();
            let n = versions.len();
            versions.dedup();
            assert_eq!(versions.len(), n, "{flavor}: one migration per version");
        }
    }
}
