//! Both schema flavours. The plain-PostgreSQL path runs for real (every other test uses it).
//! TimescaleDB is not packaged for this machine, so its path is run against stand-ins: its
//! functions as SQL functions with the signatures the migrations call (so argument types are
//! checked), its continuous aggregate as a plain materialized view. Every statement must
//! succeed, or fail only because the extension is missing (its `timescaledb.*` table options,
//! the extension itself); never on syntax or on a table or column that does not exist. The
//! same migrations and the service's policy SQL were run on TimescaleDB 2.23 (licensed build,
//! in PGlite) when they were written; see docs/operations.md.

mod common;

use aftercare::store::{Flavor, MIGRATIONS};
use common::*;
use sqlx::Connection;

const ALLOWED: &[&str] = &[
    "22023", // invalid_parameter_value: unrecognized parameter namespace "timescaledb"
    "58P01", // undefined_file: extension control file not found
    "0A000", // feature_not_supported
    "42704", // undefined_object: unrecognized configuration parameter / extension
];

/// TimescaleDB's functions as the migrations call them, doing nothing.
const TIMESCALE_STANDINS: &str = "
    CREATE FUNCTION by_range(column_name name, partition_interval interval) RETURNS text
        LANGUAGE sql AS $$ SELECT 'dimension' $$;
    CREATE FUNCTION create_hypertable(relation regclass, dimension text,
                                      create_default_indexes boolean DEFAULT true,
                                      if_not_exists boolean DEFAULT false,
                                      migrate_data boolean DEFAULT false) RETURNS text
        LANGUAGE sql AS $$ SELECT 'hypertable' $$;
    CREATE FUNCTION set_chunk_time_interval(hypertable regclass, chunk_time_interval anyelement,
                                            dimension_name name DEFAULT NULL) RETURNS void
        LANGUAGE sql AS $$ SELECT $$;
    CREATE FUNCTION add_compression_policy(hypertable regclass, compress_after interval)
        RETURNS integer LANGUAGE sql AS $$ SELECT 1000 $$;
    CREATE FUNCTION add_retention_policy(relation regclass, drop_after interval)
        RETURNS integer LANGUAGE sql AS $$ SELECT 1001 $$;
    CREATE FUNCTION time_bucket(bucket_width interval, ts timestamptz) RETURNS timestamptz
        LANGUAGE sql IMMUTABLE AS $$ SELECT date_bin(bucket_width, ts, TIMESTAMPTZ '2000-01-01') $$;
    CREATE FUNCTION add_continuous_aggregate_policy(continuous_aggregate regclass,
                                                    start_offset interval, end_offset interval,
                                                    schedule_interval interval)
        RETURNS integer LANGUAGE sql AS $$ SELECT 1002 $$;
";

#[tokio::test]
async fn the_servers_flavour_is_detected_and_migrations_are_idempotent() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let flavor = server_flavor().await;
    assert_eq!(Flavor::detect(&pool).await.unwrap(), flavor);
    // A second run applies nothing and finds every checksum intact.
    assert_eq!(aftercare::store::migrate(&pool).await.unwrap(), flavor);
    let applied: Vec<String> =
        sqlx::query_scalar("SELECT name FROM aftercare_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected: Vec<&str> = MIGRATIONS
        .iter()
        .filter(|m| m.applies.applies_to(flavor))
        .map(|m| m.name)
        .collect();
    assert_eq!(applied, expected);
    if flavor != Flavor::Plain {
        return;
    }
    assert_eq!(
        applied,
        vec![
            "core",
            "rollup_table",
            "service_and_risk",
            "rollup_deltas",
            "score_queue",
            "fleet_rank",
            "capacity",
            "booking",
            "sample_rows",
            "samples_partitioned",
            "sample_reads",
            "storage_policy",
            "score_marks_released",
            "visits",
            "list_indexes",
            "partition_width",
            "wider_partitions",
            "device_register",
            "signal_buckets"
        ]
    );
}

#[tokio::test]
async fn the_timescale_path_runs_against_stand_ins_of_the_extension() {
    let db = TestDb::empty().await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    if server_flavor().await != Flavor::Plain {
        // A TimescaleDB server runs the real path (every other test does too): what the
        // stand-ins would only emulate is checked for real here.
        let pool = db.pool().await;
        let flavor = aftercare::store::migrate(&pool).await.unwrap();
        let hypertables: Vec<String> = sqlx::query_scalar(
            "SELECT hypertable_name::text FROM timescaledb_information.hypertables ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(hypertables, ["dtc_events", "dtc_reports", "samples"]);
        let compressed: bool = sqlx::query_scalar(
            "SELECT compression_enabled FROM timescaledb_information.hypertables
             WHERE hypertable_name = 'samples'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(compressed, flavor == Flavor::Timescale { tsl: true });
        return;
    }
    sqlx::raw_sql(TIMESCALE_STANDINS)
        .execute(&mut conn)
        .await
        .unwrap();
    let tsl = Flavor::Timescale { tsl: true };
    let mut checked = 0;
    for m in MIGRATIONS.iter().filter(|m| m.applies.applies_to(tsl)) {
        if m.applies == aftercare::store::Applies::Always {
            // Flavour-independent: runs whole, as on plain PostgreSQL.
            sqlx::raw_sql(m.sql)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", m.name));
            continue;
        }
        for stmt in split_statements(m.sql) {
            checked += 1;
            let Err(e) = sqlx::raw_sql(&stmt).execute(&mut conn).await else {
                continue;
            };
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .unwrap_or_default()
                .to_string();
            assert!(
                ALLOWED.contains(&code.as_str()),
                "{}: {stmt}\n-> {code} {e}",
                m.name
            );
            // The continuous aggregate, as a materialized view, so later statements find it.
            if let Some(rest) = stmt.strip_prefix("CREATE MATERIALIZED VIEW signal_daily WITH (") {
                let (_, query) = rest.split_once(") AS").expect("WITH (..) AS");
                let query = query.trim().trim_end_matches("WITH NO DATA");
                sqlx::raw_sql(&format!("CREATE MATERIALIZED VIEW signal_daily AS {query}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }
    assert_eq!(
        checked, 34,
        "every statement of the TimescaleDB migrations checked"
    );
    // What the rest of the service relies on exists, with the columns it reads.
    sqlx::raw_sql(
        "SELECT vehicle_id, ts, seq, received_at, signal_ids, signal_values FROM samples LIMIT 0;
         SELECT vehicle_id, ts, seq, signal_ids, signal_values FROM all_samples LIMIT 0;
         SELECT vehicle_id, signal_id, ts, seq, value FROM telemetry LIMIT 0;
         SELECT vehicle_id, signal_id, day, n, min, max, sum, sumsq FROM signal_daily LIMIT 0;
         SELECT id, data FROM rollup_delta LIMIT 0;
         SELECT signal_latest(1, 'Vehicle.Speed');
         SELECT * FROM aftercare_legacy_sample_keys('{}', '{}', '{}');
         SELECT chunk_days, retention_days FROM storage_policy;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let rollup_kind: String =
        sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE relname = 'signal_daily'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(rollup_kind, "r", "the rollup is a table on every flavour");
}

#[tokio::test]
async fn a_database_left_after_the_first_migration_takes_the_flavour_the_server_has_now() {
    // An earlier build decided from what the server offered, applied migration 1, and died on
    // 2 (TimescaleDB installed but not preloaded): nothing flavour-specific is applied.
    let db = TestDb::empty().await;
    let pool = db.pool().await;
    sqlx::raw_sql(
        "CREATE TABLE aftercare_migrations (version integer PRIMARY KEY, name text NOT NULL,
                                            checksum bytea NOT NULL,
                                            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(MIGRATIONS[0].sql)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO aftercare_migrations (version, name, checksum) VALUES (1, 'core', $1)",
    )
    .bind(<sha2::Sha256 as sha2::Digest>::digest(MIGRATIONS[0].sql.as_bytes()).to_vec())
    .execute(&pool)
    .await
    .unwrap();
    let flavor = server_flavor().await;
    assert_eq!(aftercare::store::migrate(&pool).await.unwrap(), flavor);
    let (recorded, reason): (String, String) =
        sqlx::query_as("SELECT flavor, reason FROM aftercare_flavor")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(recorded, flavor.to_string());
    assert!(reason.contains("TimescaleDB"), "{reason}");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM aftercare_migrations WHERE version > 1"
        )
        .await,
        migrations_of(flavor) - 1
    );
}

#[tokio::test]
async fn a_database_of_another_flavour_is_refused_not_switched() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let flavor = server_flavor().await;
    // Recorded as another flavour than it was made with: on a server without TimescaleDB, a
    // database made for it; on a TimescaleDB server, one made plain.
    let other = if flavor == Flavor::Plain {
        "timescale-tsl"
    } else {
        "plain"
    };
    sqlx::query("UPDATE aftercare_flavor SET flavor = $1")
        .bind(other)
        .execute(&pool)
        .await
        .unwrap();
    let err = aftercare::store::migrate(&pool)
        .await
        .unwrap_err()
        .to_string();
    let why = if flavor == Flavor::Plain {
        "shared_preload_libraries"
    } else {
        "not of the flavour recorded"
    };
    assert!(err.contains(why), "{err}");
    // Nothing was changed: the schema is as it was.
    assert_eq!(
        count(&pool, "SELECT count(*) FROM aftercare_migrations").await,
        migrations_of(flavor)
    );
}

#[tokio::test]
async fn upgrading_to_rollup_deltas_recomputes_the_days_still_marked_dirty() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    if server_flavor().await == (Flavor::Timescale { tsl: true }) {
        // The licensed build's path never had dirty marks (its rollup was an aggregate, and
        // migration 32 made it a table with its own delta queue).
        assert_eq!(
            count(
                &pool,
                "SELECT count(*) FROM aftercare_migrations WHERE version = 5"
            )
            .await,
            0
        );
        return;
    }
    // Back to version 4, as an older build left it: dirty marks, no delta table.
    sqlx::raw_sql(
        "DROP TABLE rollup_delta;
         DELETE FROM aftercare_migrations WHERE version = 5;
         CREATE TABLE rollup_dirty (
             vehicle_id integer NOT NULL,
             day timestamptz NOT NULL,
             marked_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (vehicle_id, day));
         INSERT INTO vehicles (vin) VALUES ('WDB1240221A000001');
         INSERT INTO signals (name) VALUES ('Vehicle.Speed');
         -- Day 1 refreshed; day 2 got more values after its refresh and is marked dirty.
         INSERT INTO signal_daily VALUES
             (1, 1, '2026-03-01 00:00+00', 2, 10, 20, 30, 500),
             (1, 1, '2026-03-02 00:00+00', 1, 30, 30, 30, 900);
         INSERT INTO rollup_dirty (vehicle_id, day) VALUES (1, '2026-03-02 00:00+00');",
    )
    .execute(&pool)
    .await
    .unwrap();
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    insert_values(
        &pool,
        &[
            (1, 1, at("2026-03-01T08:00:00Z"), 10.0),
            (1, 1, at("2026-03-01T09:00:00Z"), 20.0),
            (1, 1, at("2026-03-02T08:00:00Z"), 30.0),
            (1, 1, at("2026-03-02T09:00:00Z"), -5.0),
            (1, 1, at("2026-03-02T23:59:59Z"), 7.0),
        ],
    )
    .await;
    aftercare::store::migrate(&pool).await.unwrap();
    assert_rollup_matches_raw(&pool).await;
    assert_eq!(
        count(
            &pool,
            "SELECT n FROM signal_daily WHERE day = '2026-03-02 00:00+00'"
        )
        .await,
        3
    );
    let gone: bool = sqlx::query_scalar("SELECT to_regclass('rollup_dirty') IS NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(gone);
    assert_eq!(count(&pool, "SELECT count(*) FROM rollup_delta").await, 0);
}

/// How many migrations a database of `flavor` gets.
fn migrations_of(flavor: Flavor) -> i64 {
    MIGRATIONS
        .iter()
        .filter(|m| m.applies.applies_to(flavor))
        .count() as i64
}

/// Splits on `;` at the end of a line (the migration files keep one statement per `;`).
fn split_statements(sql: &str) -> Vec<String> {
    let body: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    body.split(";\n")
        .map(|s| s.trim().trim_end_matches(';').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn statement_splitting() {
    let s = split_statements("-- c\nSELECT 1;\nSELECT f(\n  2);\n");
    assert_eq!(s, vec!["SELECT 1", "SELECT f(\n  2)"]);
}
